"""limo-exp reproduce and limo-exp diff (issue 35): the environment record every run logs, a run's
record read back, the check table, the rerun and its verdict, two runs' differences."""

from __future__ import annotations

import platform
from importlib.metadata import version

import pytest

from limo_exp.analysis import checks
from limo_exp.tracking import environment


class Files:
    """A tracker that keeps what is logged as an artifact."""

    run_id = "r" * 32

    def __init__(self):
        self.artifacts = []

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append((path.name, path.read_text(), artifact_path))


def test_the_environment_record_on_a_cpu(tmp_path):
    tags = environment.environment_tags()
    assert tags["python.version"] == platform.python_version()
    assert tags["hardware.gpus"] == "none" and tags["hardware.gpu_count"] == "0"
    assert tags["version.torch"] == version("torch") and tags["git.commit"]
    assert not any(k.startswith("cuda.") for k in tags)  # no CUDA stack on a CPU
    t = Files()
    environment.log_environment(t, tmp_path)
    [(name, text, folder)] = t.artifacts
    assert name == "environment.txt" and folder is None
    lines = text.splitlines()
    assert f"torch=={version('torch')}" in lines and f"mlflow=={version('mlflow')}" in lines
    names = [x.split("==")[0] for x in lines]
    assert "limo-exp==0.1.0" in lines and names == sorted(names) and all("==" in x for x in lines)
    assert len(lines) == len(environment.installed_distributions()) > 50


def test_no_gpu_driver_no_torch_import():
    """Without a GPU driver, the environment is read without importing torch (reproduce --check's seconds)."""
    import subprocess
    import sys

    if environment.cuda_environment():
        pytest.skip("a GPU here: torch is imported to read CUDA's versions")
    code = "import sys; from limo_exp.tracking import environment as e; t = e.environment_tags(); "
    code += "print(t['hardware.gpus'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["none", "False"]


def test_the_environment_record_on_cuda_faked(monkeypatch, tmp_path):
    """On CUDA: GPU names and count, driver (nvidia-smi when NVML is not importable), CUDA, cuDNN, NCCL."""
    import sys

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3), raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML not importable: nvidia-smi answers
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 570.124.06\necho 570.124.06\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    tags = environment.environment_tags()
    assert {k: v for k, v in tags.items() if k.startswith(("cuda.", "hardware.gpu"))} == {
        "hardware.gpus": "NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3",
        "hardware.gpu_count": "2",
        "cuda.runtime": "12.8",
        "cuda.cudnn": "91002",
        "cuda.nccl": "2.27.3",
        "cuda.driver": "570.124.06",
    }
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert environment.cuda_driver() == "unknown"


# ---- a recorded tiny run: its record, the check table, bad inputs, the rerun, diff -------------


def write_pool(path, n: int = 48) -> None:
    """A local pool file (pool=local_jsonl): synthetic problems with long worked solutions."""
    import json

    from limo_exp.data.synthetic import make_pool

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"problem": r.problem, "answer": r.answer, "solution": next(s.text for s in r.solutions if s.kind == "long")}
            for r in make_pool(n, 0, "multistep")]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, cache_dir):
    """A tiny run (2 steps) trained on a local pool file and evaluated on a copy of the first 3
    AIME 2024 problems (data.n_samples=8, train.lr=1e-4: a point of a sweep over both); its store."""
    from conftest import EVAL_DIR, compose

    from limo_exp.commands import run as run_cmd

    if not (EVAL_DIR / "aime24.jsonl").is_file():
        pytest.skip(f"no {EVAL_DIR / 'aime24.jsonl'}")
    root = tmp_path_factory.mktemp("reproduce")
    (root / "eval").mkdir()
    (root / "eval" / "aime24.jsonl").write_text((EVAL_DIR / "aime24.jsonl").read_text())
    write_pool(root / "pools" / "pool.jsonl")
    where = [
        f"paths.output_root={root}",
        f"paths.cache_dir={cache_dir}",
        f"tracking.uri=sqlite:///{root}/mlruns.db",
    ]
    base = ["debug=fast", *where, "study=repro", "pool=local_jsonl", f"pool.data_dir={root / 'pools'}",
            "pool.file=pool.jsonl", "eval.tasks=[limo_aime24]", f"eval.data_dir={root / 'eval'}", "eval.limit=3"]  # fmt: skip
    a = run_cmd.run(compose([*base, "data.n_samples=8", "train.lr=1e-4"]))
    return {"root": root, "where": where, "base": base, "a": a}


@pytest.fixture(scope="module")
def point_b(recorded):
    """The sweep's other point: data.n_samples=4, train.lr=3e-4."""
    from conftest import compose

    from limo_exp.commands import run as run_cmd

    return run_cmd.run(compose([*recorded["base"], "data.n_samples=4", "train.lr=3e-4"]))


def check(recorded, capsys, *extra, target=None, check_only=True):
    from limo_exp.commands import reproduce

    over = [*recorded["where"], *extra]
    out = reproduce.reproduce(
        reproduce.today_config(over), target or recorded["a"]["run_id"], over, check_only
    )
    return out, {c.facet: c for c in out["checks"]}, capsys.readouterr().out


def test_a_run_records_its_environment_and_reads_back(recorded):
    from limo_exp.tracking.record import RecordStore

    rec = RecordStore(f"sqlite:///{recorded['root']}/mlruns.db").record(recorded["a"]["run_key"])
    assert rec.run_id == recorded["a"]["run_id"] and rec.experiment == "repro" and rec.missing() == {}
    assert rec.environment == environment.installed_distributions()
    assert rec.tags["python.version"] == platform.python_version() and rec.tags["hardware.gpu_count"] == "0"
    assert not any(
        k.startswith(("python.", "hardware.", "version.")) for k in rec.run.params
    )  # not in the key
    assert rec.selected_ids == recorded["a"]["selected_ids"] and len(rec.losses) == 2
    assert rec.config["data"]["n_samples"] == 8 and rec.dataset("evaluation", "eval/aime24") is not None


def test_check_on_the_same_checkout_and_data_is_all_ok(recorded, capsys):
    out, table, text = check(recorded, capsys)
    assert {f: c.status for f, c in table.items()} == {
        "code": table["code"].status,  # a dirty shared tree reads unknown, a clean one ok
        "python": "ok", "packages": "ok", "hardware": "ok", "data:pool": "ok", "data:aime24": "ok",
        "run key": "ok", "selection": "ok",
    }  # fmt: skip
    assert table["code"].status in ("ok", "unknown") and "new_run_id" not in out
    assert "\nselection    ok        the same 8 ids in the same order\n" in text
    assert "\nrun key      ok        " + recorded["a"]["run_key"] in text


def test_check_names_a_package_whose_version_differs(recorded, capsys, monkeypatch):
    from limo_exp.tracking import environment as env

    real = env.installed_distributions()
    monkeypatch.setattr(
        env, "installed_distributions", lambda: real | {"transformers": "4.0.0", "extra-pkg": "1.0"}
    )
    _, table, text = check(recorded, capsys)
    assert table["packages"].status == "differs"
    assert (
        table["packages"].detail
        == f"1 version(s) differ: transformers {real['transformers']} (run) vs 4.0.0; only here: extra-pkg==1.0"
    )
    assert (
        table["packages"].fix
        == f"pip install 'transformers=={real['transformers']}'; pip uninstall extra-pkg"
    )
    assert f"-> pip install 'transformers=={real['transformers']}'" in text


def test_check_names_an_edited_benchmark_item_and_no_rerun_starts(recorded, capsys, tmp_path):
    """One AIME item edited in a copy of the benchmark: --check names it; reproduce stops before any
    model loads (no new run), unless --anyway."""
    import json

    from limo_exp.tracking.record import RecordStore

    rows = [json.loads(x) for x in (recorded["root"] / "eval" / "aime24.jsonl").read_text().splitlines()]
    rows[1]["problem"] = rows[1]["problem"].replace("$", "$ ", 1)  # one item's text changed
    rows[2]["answer"] = "1"  # another's gold answer
    (tmp_path / "aime24.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, table, _ = check(recorded, capsys, f"eval.data_dir={tmp_path}")
    assert table["data:aime24"].status == "differs"
    assert table["data:aime24"].detail == f"edited: {rows[1]['id']}; gold answer differs: {rows[2]['id']}"
    assert table["run key"].status == "differs" and table["data:pool"].status == "ok"
    store = RecordStore(f"sqlite:///{recorded['root']}/mlruns.db")
    before = len(store.client.search_runs([store.client.get_experiment_by_name("repro").experiment_id]))
    out, _, text = check(recorded, capsys, f"eval.data_dir={tmp_path}", check_only=False)
    assert out["stopped"] == ["data:aime24"] and "not rerunning: data:aime24 differ" in text
    assert (
        len(store.client.search_runs([store.client.get_experiment_by_name("repro").experiment_id])) == before
    )


def test_a_moved_pool_file_is_found_by_its_fingerprint_or_named(recorded, capsys, tmp_path):
    import shutil

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(recorded["root"] / "pools" / "pool.jsonl", moved / "renamed.jsonl")
    (recorded["root"] / "pools" / "pool.jsonl").rename(tmp_path / "gone.jsonl")
    try:
        with pytest.raises(SystemExit, match=r"set pool.data_dir=<the folder that holds it>"):
            check(recorded, capsys)
        _, table, text = check(recorded, capsys, f"pool.data_dir={moved}")
        assert "found by its fingerprint" in text and str(moved / "renamed.jsonl") in text
        assert table["data:pool"].status == "ok" and table["selection"].status == "ok"
    finally:
        (tmp_path / "gone.jsonl").rename(recorded["root"] / "pools" / "pool.jsonl")


def test_bad_input_is_one_line_and_writes_nothing(recorded, capsys, tmp_path):
    from limo_exp.commands.reproduce import main
    from limo_exp.tracking.tracker import Tracker

    uri = f"sqlite:///{recorded['root']}/mlruns.db"
    cases = {
        "0" * 32: (f"tracking.uri={uri}", f"no run {'0' * 32} in the MLflow store {uri}"),
        "1" * 20: (f"tracking.uri={uri}", f"no run with key {'1' * 20} in the MLflow store {uri}"),
        "nope": (
            f"tracking.uri={uri}",
            "'nope' is neither a run id (32 hex digits) nor a run key (20 hex digits)",
        ),
        "2" * 32: (f"tracking.uri=sqlite:///{tmp_path}/none.db", f"no MLflow store at {tmp_path}/none.db"),
    }
    for target, (over, message) in cases.items():
        with pytest.raises(SystemExit) as e:
            main([target, over, f"paths.output_root={tmp_path}", "--check"])
        assert str(e.value).startswith(message) and "\n" not in str(e.value)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(
        SystemExit, match=rf"the MLflow tracking server at http://127.0.0.1:{port} cannot be reached"
    ):
        main(["3" * 32, f"tracking.uri=http://127.0.0.1:{port}", f"paths.output_root={tmp_path}"])
    with pytest.raises(SystemExit, match="reproduce reruns the recorded config: data.n_samples changes what"):
        main(
            [
                recorded["a"]["run_id"],
                f"tracking.uri={uri}",
                "data.n_samples=4",
                f"paths.output_root={tmp_path}",
            ]
        )
    t = Tracker(
        uri, "older", str(recorded["root"] / "art")
    )  # a run logged before config.yaml and environment.txt existed
    with t.run("old", {"limo.run_key": "4" * 20, "limo.kind": "run", "version.torch": "2.0.0"}):
        pass
    with pytest.raises(
        SystemExit,
        match=r"predates its config.yaml artifact: nothing to rerun \(it lacks: config.yaml, environment.txt, selected_ids.json",
    ):
        main(["4" * 20, f"tracking.uri={uri}", f"paths.output_root={tmp_path}"])
    assert list(tmp_path.iterdir()) == []  # nothing written: no store created, no run folder


def test_reproducing_a_tiny_run_is_identical(recorded, capsys):
    """The rerun: a new run tagged limo.reproduces, its responses generated again (no stored ones),
    bitwise the same losses, responses and verdicts."""
    from limo_exp.tracking.record import RecordStore

    out, table, text = check(recorded, capsys, check_only=False)
    res = out["comparison"]
    assert res["verdict"] == "identical" and res["first_difference"] is None
    assert res["training"]["equal"] and res["training"]["max_abs_diff"] == 0.0
    e = res["responses"]["limo_aime24"]
    assert (e["problems"], e["same_responses"], e["same_verdicts"], e["disagree"]) == (3, 3, 3, [])
    new = RecordStore(f"sqlite:///{recorded['root']}/mlruns.db").record(out["new_run_id"])
    assert new.tags["limo.reproduces"] == recorded["a"]["run_id"] and new.experiment == "repro"
    assert (
        new.run.metrics["eval/responses_generated"] == 3.0
        and new.run.metrics["eval/responses_from_store"] == 0.0
    )
    assert (
        new.tags["limo.run_key"] == recorded["a"]["run_key"]
        and new.tags["limo.run_dir"] == f"runs/{recorded['a']['run_key']}"
    )
    assert "verdict      identical" in text


def test_diff_of_two_points_of_a_sweep_lists_the_swept_keys(recorded, point_b, capsys):
    from limo_exp.commands import diff
    from limo_exp.commands.reproduce import today_config

    out = diff.diff(today_config(recorded["where"]), recorded["a"]["run_id"], point_b["run_key"])
    assert out["semantic"] == ["data.n_samples", "train.lr"]
    assert [(k, a, b) for k, a, b in out["config"] if k in out["semantic"]] == [
        ("data.n_samples", "8", "4"), ("train.lr", "0.0001", "0.0003")
    ]  # fmt: skip
    table = {c.facet: c.status for c in out["checks"]}
    assert table.pop("code") in ("ok", "unknown")  # unknown: a dirty tree (this shared checkout)
    assert table == {"python": "ok", "packages": "ok", "hardware": "ok", "data:pool": "ok",
                     "data:aime24": "ok", "run key": "differs", "selection": "differs"}  # fmt: skip
    sel = next(c for c in out["checks"] if c.facet == "selection")
    assert sel.detail.startswith("B's 4 ids are A's first 4 (nested); A has 4 more: ")  # one seed: nested
    assert out["results"]["limo_aime24"]["problems"] == 3
    text = capsys.readouterr().out
    assert "config: 2 semantic key(s) differ" in text


# ---- the pieces on their own: the verdict, the hardware line, the config keys --------------------


def _record(ids, losses, metrics=None):
    from limo_exp.tracking.protocol import TrackedRun
    from limo_exp.tracking.record import Dataset, RunRecord

    run = TrackedRun("a" * 32, metrics=metrics or {"aime24/accuracy": 0.5})
    return RunRecord(
        run, "s", "u", selected_ids=ids, losses=losses, datasets=[Dataset("eval/x", "d1", "evaluation")]
    )


def _samples(correct: list[bool], texts: list[str] | None = None) -> dict:
    texts = texts or [f"r{i}" for i in range(len(correct))]
    return {"limo_aime24": [{"id": str(i), "canonical_id": f"c{i}", "sample": 0, "correct": c, "response": t}
                            for i, (c, t) in enumerate(zip(correct, texts))]}  # fmt: skip


def test_the_verdict_and_the_first_difference():
    from limo_exp.analysis.agreement import compare_runs
    from limo_exp.config_eval import ReportConfig

    opts = ReportConfig(n_boot=200)
    a, same = _record(["1", "2"], [2.5, 1.25]), _record(["1", "2"], [2.5, 1.25])
    ok = [True] * 10 + [False] * 10
    res = compare_runs(a, same, _samples(ok), _samples(ok), opts)
    assert (res["verdict"], res["first_difference"]) == ("identical", None)
    # one response's text differs, its verdict too: within noise (exact McNemar p = 1), the item named
    flipped = ok[:9] + [False] + ok[10:]
    res = compare_runs(
        a,
        same,
        _samples(ok),
        _samples(flipped, [f"r{i}" for i in range(9)] + ["x"] + [f"r{i}" for i in range(10, 20)]),
        opts,
    )
    assert res["verdict"] == "within noise" and res["first_difference"] == "responses: limo_aime24 item 9"
    e = res["responses"]["limo_aime24"]
    assert (e["same_responses"], e["same_verdicts"], e["disagree"], e["p_value"]) == (19, 19, ["9"], 1.0)
    # a loss one ulp away comes first; every answer lost: different (p = 0.002)
    res = compare_runs(
        a, _record(["1", "2"], [2.5, 1.2500000000000002]), _samples(ok), _samples([False] * 20), opts
    )
    assert res["verdict"] == "different" and res["first_difference"].startswith(
        "training: loss at step 2 (largest difference 2.22e-16)"
    )
    assert res["responses"]["limo_aime24"]["p_value"] == pytest.approx(0.001953125)
    # other selected ids come before everything
    res = compare_runs(a, _record(["1", "3"], [2.5, 1.25]), _samples(ok), _samples(ok), opts)
    assert (
        res["first_difference"] == "data: selected ids: 1 only A, 1 only B"
        and res["verdict"] == "within noise"
    )


def test_the_hardware_line_says_what_a_difference_changes():
    cpu = {"hardware.gpus": "none", "hardware.gpu_count": "0", "hardware.cpu_model": "AMD EPYC"}
    h100 = {"hardware.gpus": "NVIDIA H100 80GB HBM3", "hardware.gpu_count": "1", "cuda.runtime": "12.8"}
    assert checks.hardware(cpu, dict(cpu)).status == "ok"
    assert "CPU vs GPU" in checks.hardware(h100, cpu).detail
    other_cpu = checks.hardware(cpu, cpu | {"hardware.cpu_model": "Intel Xeon"})
    assert other_cpu.status == "differs" and "AVX2 / AVX-512" in other_cpu.detail
    eight = h100 | {"hardware.gpus": ", ".join(["NVIDIA H100 80GB HBM3"] * 8), "hardware.gpu_count": "8"}
    line = checks.hardware(h100, eight | {"cuda.runtime": "12.9"}).detail
    assert "all-reduce order" in line and "cuda.runtime 12.8 vs 12.9: kernel choices" in line
    assert checks.hardware({"hardware.gpus": "none"}, cpu).status == "unknown"  # no CPU model recorded


def test_config_keys_semantic_first_and_older_runs_packages():
    diff = checks.config_differences(
        {"train.lr": "1e-4", "paths.output_root": "a", "data.n_samples": "8", "eval.store": "auto"},
        {"train.lr": "3e-4", "paths.output_root": "b", "data.n_samples": "8", "seed": "1"},
    )
    assert diff == [("seed", None, "1"), ("train.lr", "1e-4", "3e-4"), ("eval.store", "auto", None),
                    ("paths.output_root", "a", "b")]  # fmt: skip
    older = checks.packages(
        None,
        {"torch": "2.13.0", "mlflow": "3.17.2"},
        {"version.torch": "2.0.0", "version.mlflow": "3.17.2", "version.lm-eval": "absent"},
    )
    assert older.status == "differs" and older.fix == "pip install 'torch==2.0.0'"
    assert (
        older.detail
        == "run predates environment.txt (only 2 version.* tags): 1 version(s) differ: torch 2.0.0 (run) vs 2.13.0"
    )


@pytest.mark.slow  # a real mlflow server and two tiny runs: minutes on this shared CPU
def test_reproduce_a_run_recorded_on_a_real_mlflow_server(tmp_path, cache_dir):
    """`limo-exp run` logs to a real `mlflow server` (credentials in the URI); `limo-exp reproduce`
    reads the run back over HTTP, checks (printing none of the password), reruns and finds it identical."""
    import os
    import re
    import subprocess
    import sys

    import services

    with services.mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "art") as port:
        uri = f"http://limo:pa55word-xyz@127.0.0.1:{port}"
        where = [
            f"paths.output_root={tmp_path / 'out'}",
            f"paths.cache_dir={cache_dir}",
            f"tracking.uri={uri}",
        ]
        env = {**os.environ, "LIMO_TRACKING_URI": ""}

        def cli(*args):
            done = subprocess.run([sys.executable, "-m", "limo_exp", *args], env=env, capture_output=True,
                                  text=True, timeout=1200)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        first = cli("run", "debug=fast", "study=server", *where)
        run_id = re.search(r"run ([0-9a-f]{32}) finished", first).group(1)
        checked = cli("reproduce", run_id, *where, "--check")
        assert (
            f"run {run_id} (N=8 · long · s0, FINISHED) of study 'server' in http://***@127.0.0.1:{port}"
            in checked
        )
        assert re.search(r"\npackages +ok +all \d+ distributions at the same versions\n", checked)
        assert "pa55word" not in checked  # (MLflow's own "View run at" line of a run's end shows it)
        out = cli("reproduce", run_id, *where)
        assert "\nverdict      identical\n" in out and "training     2 vs 2 loss steps: bitwise equal" in out


def test_the_selection_line():
    nested = checks.selection(["1", "2"], ["1", "2", "3"], sides=("A", "B"))
    assert (nested.status, nested.detail) == (
        "differs",
        "A's 2 ids are B's first 2 (nested); B has 1 more: 3",
    )
    assert checks.selection(["1", "5"], ["1", "2"]).detail == "1 id(s) only run: 5; 1 only here: 2"
    assert checks.selection(["2", "1"], ["1", "2"]).detail == "the same ids in another order"
    rows = [{"id": "1", "problem": "p", "text": "t"}]
    edited = checks.selection(["1"], ["1"], rows, [{"id": "1", "problem": "p", "text": "t2"}])
    assert edited.detail == "the same 1 ids; training text differs: 1"
    assert checks.selection(None, ["1"]).status == "unknown"
