"""The GPU benches (bench/bench_gpu_train.py, bench/bench_gpu_eval.py) on the CPU: their tiny
shapes run here, and what gates them on a GPU (the time table per device, the memory rule, the
host-sync count, the forced response lengths, each part's limit) is checked without one."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_the_gpu_bench_script_runs_on_a_cpu(tmp_path):
    """bench/bench_gpu_train.py is meant for a CUDA machine; its tiny shape keeps it working here.
    limo-exp and TRL see the same sequences in the same order, so their losses agree; limo-exp's
    varlen attention computes no pair across documents where sdpa's block mask does, for the
    same losses; TRL's side gets the same varlen kernel (its collator's boundaries); FSDP2 in one
    process gives the losses of the plain recipe."""
    import importlib.util

    import bench_gpu_train

    from limo_exp.training import attention

    settings = "limo_16k,limo_16k_bf16_kahan,limo_b8,trl_b8,limo_16k_mixed,limo_16k_mixed_sdpa,limo_16k_fsdp"
    args = ["--shape", "tiny", "--seq", "256", "--steps", "2", "--rounds", "1", "--settings", settings]
    out = bench_gpu_train.main([*args, "--out", str(tmp_path / "g.json")])
    best = out["best"]
    assert best["limo_16k"]["recipe"] == {
        "master_dtype": "float32",
        "optimizer": "adamw",
        "loss": "target_only",
        "gradient_checkpointing": False,  # max_length 256
        "micro_batch_tokens": 256,
        "liger_layers": False,
        "checkpoint_skip_layers": 0,
        "attention": attention.NAME,  # what choose("auto") gives training on a CPU
        "attention_reason": attention.choose("auto")[1],
    }
    assert best["limo_16k_bf16_kahan"]["recipe"]["master_dtype"] == "bfloat16"
    for name in ("limo_16k", "limo_16k_bf16_kahan", "limo_b8", "limo_16k_mixed", "limo_16k_fsdp"):
        assert len(best[name]["losses"]) == 3 and best[name]["real_tokens_per_s"] > 0
        assert min(best[name]["changed_fraction"].values()) >= 0.99  # no lost updates, bf16 + Kahan too
        assert best[name]["timed_steps"] == 2 and best[name]["step_seconds"] > 0
        assert best[name]["host_syncs"]["counted"] is False  # CUDA's sync debug mode: not here
    assert best["limo_16k"]["losses"] == pytest.approx([6.23989, 6.25211, 6.25634], abs=1e-4)
    assert best["limo_16k_bf16_kahan"]["losses"] == pytest.approx(best["limo_16k"]["losses"], abs=1e-3)
    mixed, dense = best["limo_16k_mixed"], best["limo_16k_mixed_sdpa"]
    assert mixed["attention_flops_ratio"] == 1.0 and dense["attention_flops_ratio"] > 1.5
    assert dense["recipe"]["attention"] == "sdpa" and dense["attention_work"]["masks"] > 0
    assert dense["losses"] == pytest.approx(mixed["losses"], abs=1e-5)
    fsdp = best["limo_16k_fsdp"]
    assert fsdp["recipe"]["fsdp"]["version"] == 2 and fsdp["recipe"]["fsdp"]["processes"] == 1
    assert fsdp["losses"] == pytest.approx(best["limo_16k"]["losses"], abs=1e-5)
    assert out["summary"]["limo_16k"]["round_spread"] is None  # one round
    assert out["device"] == "cpu" and out["device_faked"] is False and out["commit"]
    assert out["time"]["table"] == {}  # a CPU has no data sheet: estimates come from what ran here
    from limo_exp.training.loss import liger_missing

    assert liger_missing()  # no CUDA here
    assert out["liger_vs_plain_loss"] == out["liger_layers_vs_plain"] == {"skipped": liger_missing()}
    if importlib.util.find_spec("trl") is None:  # make test's venv: the bench extra is not installed
        assert best["trl_b8"]["skipped"] == "trl is not installed (pip install -e '.[bench]')"
        assert out["targets"]["checks"]["limo_b8_vs_trl_b8"]["pass"] is None
    else:
        trl = best["trl_b8"]
        assert trl["losses"] == pytest.approx(best["limo_b8"]["losses"], abs=1e-4)
        assert trl["recipe"]["attention"] == attention.NAME and trl["recipe"]["padding_free"] is True
        assert trl["attention_flops_ratio"] == 1.0  # one padding-free row, each document alone
        assert out["targets"]["checks"]["limo_b8_vs_trl_b8"]["value"] > 0
        assert out["targets"]["checks"]["limo_b8_losses_vs_trl_b8"]["pass"] is True
        # round 2 runs TRL first; its trainer writes the tokenizer's special tokens into the model's
        # config, which must not change the weights the next setting starts from (nor must the FSDP
        # setting of the call before leave Accelerate's state behind)
        args[args.index("--rounds") + 1], args[-1] = "2", "limo_b8,trl_b8,trl_16k_mixed_sdpa"
        again = bench_gpu_train.main([*args, "--out", str(tmp_path / "g2.json")])
        runs = again["runs"]
        assert runs["limo_b8"][1]["losses"] == runs["limo_b8"][0]["losses"] == best["limo_b8"]["losses"]
        assert runs["trl_b8"][1]["losses"] == pytest.approx(best["trl_b8"]["losses"], abs=1e-6)
        assert len(again["summary"]["limo_b8"]["rounds"]) == 2
        assert again["targets"]["checks"]["limo_b8_round_spread"]["value"] is not None
        sdpa = again["best"]["trl_16k_mixed_sdpa"]  # TRL as before: a block mask, one timed step
        assert sdpa["recipe"]["attention"] == "sdpa" and sdpa["attention_flops_ratio"] > 1.5
        assert sdpa["timed_steps"] == 1 and len(sdpa["losses"]) == 2


def test_the_gpu_bench_runs_the_targets_first_and_checks_them():
    """The targets' settings run --rounds times (interleaved) before the others run once, so a run
    stopped by its time limit keeps them; the targets section reads the issue's ratios against
    TRL on the same kernel, the loss equality and the weights changed."""
    import bench_gpu_train as b

    order = [name for _, name in b.schedule(b.DEFAULT, 2, 1)]
    assert order == b.TARGETED + b.TARGETED[::-1] + b.EXTRA
    assert order[:2] == ["limo_16k_mixed", "trl_16k_mixed"] and "limo_b16" in b.TARGETED
    assert "limo_b32" not in b.TARGETED  # 121 GB on the H200: an extra where it fits
    row = {
        "round_spread": 0.05,
        "peak_memory_gb": 10.0,
        "mfu": 0.2,
        "changed_min": 0.999,
        "losses": [2.0, 1.0],
    }
    summary = {name: dict(row, real_tokens_per_s=100.0, rounds=[100.0, 95.0]) for name in b.TARGETED}
    summary["limo_16k_mixed"] |= {"real_tokens_per_s": 400.0, "rounds": [400.0, 390.0], "mfu": 0.31}
    summary["limo_b8"] |= {"peak_memory_gb": 12.0, "losses": [2.0, 1.01]}
    summary["trl_16k"] |= {"changed_min": 0.5}
    summary.pop("trl_b16")
    got = b.targets(summary)
    checks = got["checks"]
    assert checks["limo_16k_mixed_mfu"]["pass"] and checks["limo_16k_mixed_vs_trl_16k_mixed"]["value"] == 4.0
    assert checks["limo_16k_mixed_vs_trl_16k_mixed"]["rounds"] == [4.0, pytest.approx(4.105, abs=1e-3)]
    assert checks["limo_b8_losses_vs_trl_b8"]["value"] == pytest.approx(0.0099, abs=1e-4)
    assert got["failed"] == [
        "limo_16k_vs_trl_16k",
        "limo_b8_vs_trl_b8",
        "limo_b8_peak_vs_trl_b8",
        "limo_b8_losses_vs_trl_b8",
        "trl_16k_changed",
    ]
    assert got["unmeasured"] == [
        "limo_b16_vs_trl_b16",
        "limo_b16_peak_vs_trl_b16",
        "limo_b16_losses_vs_trl_b16",
        "trl_b16_round_spread",
        "trl_b16_changed",
    ]
    assert got["also"] == {"limo_16k_mixed_vs_trl_16k_mixed_sdpa": None}


def test_the_gpu_bench_gates_time_on_either_gpu_and_on_any_device():
    """A time table for the H100 and the H200 (measured figures where the H200 has them, else
    FLOPs over the data sheet at an assumed MFU, each saying which); the b32 pair needs more than
    an H100 holds; on a device without a data sheet, the rate reached here by a setting of the
    same data stands in; the whole schedule against a budget, nothing run."""
    import bench_gpu_train as b
    from gpu_train import settings as s
    from transformers import Qwen2Config

    config = Qwen2Config(**s.SHAPES["1.5b"], max_position_embeddings=16384, tie_word_embeddings=True)
    h100, h200 = (s.table(d, config, 16384, 3, "1.5b") for d in ("NVIDIA H100 80GB HBM3", "NVIDIA H200"))
    assert set(h100) == set(h200) == set(s.SETTINGS)
    assert h200["limo_16k"][2] == s.MEASURED_SOURCE and h200["limo_16k"][1] == pytest.approx(16384 / 21727.5)
    assert h100["limo_16k"][2].startswith("estimate: FLOPs / (H100 data-sheet 989 TFLOP/s x MFU 0.2)")
    tokens, flops = s.step_work("limo_16k", config, 16384, 3)
    assert tokens == 16384 and h100["limo_16k"][1] == pytest.approx(flops / (989e12 * 0.2))
    assert flops == pytest.approx(6 * 1543714304 * 16384 + 6 * 1536 * 28 * 16384 * 16385)
    # the dense-mask TRL row computes its whole ~53k-token square: several times the varlen one
    assert (
        s.step_work("trl_16k_mixed_sdpa", config, 16384, 3)[1]
        > 1.5 * s.step_work("trl_16k_mixed", config, 16384, 3)[1]
    )
    assert s.why_skip("limo_b32", True, True, "", 74.5).startswith("needs ~121 GiB")
    assert s.why_skip("limo_b16", True, True, "", 74.5) == "" == s.why_skip("limo_b32", True, True, "", 131.3)
    assert s.table("cpu", config, 16384, 3, "1.5b") == {}
    runs = {"limo_b8": [{"real_tokens_per_s": 1.0, "seconds": 12.0, "step_seconds": 2.0, "timed_steps": 2}]}
    flops = {"limo_b8": 100.0, "trl_b8": 300.0, "limo_16k": 50.0}
    assert b.expected("limo_b8", 3, {}, runs, flops) == (12.0, "as its last round")
    # setup 12 - 3 x 2 = 6 s, then 4 steps at 3x the FLOPs of limo_b8's 2 s
    assert b.expected("trl_b8", 3, {}, runs, flops) == (
        6.0 + 4 * 6.0,
        "the FLOP rate and setup of limo_b8 here",
    )
    assert b.expected("trl_b8", 3, {}, {}, flops) is None
    # the same side before the same data: TRL's rate does not stand for limo-exp's
    runs2 = {
        **runs,
        "trl_16k": [{"real_tokens_per_s": 1.0, "seconds": 40.0, "step_seconds": 9.0, "timed_steps": 2}],
    }
    flops2 = {**flops, "trl_16k": 50.0}
    assert b.expected("limo_16k", 3, {}, runs2, flops2)[1] == "the FLOP rate and setup of limo_b8 here"
    # a rate reached here beats a data-sheet estimate; a figure measured on the device beats both
    sheet = {"trl_b8": (12.0, 1.0, "estimate: FLOPs / (...)")}
    assert b.expected("trl_b8", 3, sheet, runs, flops)[1] == "the FLOP rate and setup of limo_b8 here"
    assert b.expected("trl_b8", 3, sheet, {}, flops) == (16.0, "estimate: FLOPs / (...)")
    measured = {"trl_b8": (12.0, 1.0, s.MEASURED_SOURCE)}
    assert b.expected("trl_b8", 3, measured, runs, flops) == (16.0, s.MEASURED_SOURCE)
    laid = b.plan("H100", 255)
    skipped = {r["setting"]: r["skipped"] for r in laid["schedule"] if r["skipped"]}
    assert not any(r["skipped"] for r in laid["schedule"][:8])  # round 1 of the targets always fits
    assert skipped["limo_b32"].startswith("needs ~121 GiB") and laid["expected_end_s"] <= 255


@pytest.mark.filterwarnings("ignore:something else")
@pytest.mark.filterwarnings("ignore:called a synchronizing")
def test_host_syncs_are_counted_inside_the_timed_steps_only(monkeypatch):
    """The clock turns CUDA's sync debug mode to "warn" after the warm-up step and back before its
    last synchronisation; the warnings in between are the count, with the lines that made them."""
    import torch
    from gpu_train.measure import SYNC_MESSAGE, Clock, HostSyncs

    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    syncs = HostSyncs(True)
    with Clock(False, 3, syncs=syncs) as clock:
        for _ in range(3):  # twice a step: only steps 2 and 3 count
            warnings.warn(SYNC_MESSAGE, UserWarning, stacklevel=1)
            warnings.warn(SYNC_MESSAGE, UserWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
            opt.step()
    assert clock.seconds >= 0 and modes == ["warn", "default"]
    got = syncs.result(2)
    assert (got["count"], got["per_step"]) == (4, 2.0)
    assert list(got["where"].values()) == [2, 2]
    assert HostSyncs(False).result(2)["counted"] is False


@pytest.fixture(scope="module")
def eval_model(tmp_path_factory):
    import torch
    from gpu_eval import model as M
    from gpu_train.settings import SHAPES

    shape = {k: v for k, v in SHAPES["tiny"].items() if k != "vocab_size"}
    return M.build(shape, tmp_path_factory.mktemp("gpu_eval") / "base", torch.float32, "cpu")


def test_the_eval_bench_model_ends_responses_where_the_workload_says(eval_model, tmp_path):
    """At Qwen2.5's vocabulary, sampled at temperature 0.6 / top_p 0.95 through the public
    engine API: the forced-end rule ends every response by its end-of-turn token between its
    start and end positions; a rule that never fires gives every response its max_new."""
    from gpu_eval import model as M
    from gpu_eval.workloads import engine, requests, step_time

    from limo_exp.evaluation.generation.engines import Gen

    tok = M.tokenizer()
    assert len(tok) == M.VOCAB == 151936 and tok("w5 w151935")["input_ids"] == [5, 151935]
    ends = M.variant(eval_model, tmp_path / "ends", start=14, end=26, temperature=0.6)
    eng = engine(str(ends), "eager", 8, "float32", "cpu")
    assert type(eng.model).__name__ == "ForcedEndQwen2" and eng.model.config.vocab_size == 151936
    reqs = requests(8, 4, 6, 40, 0.6, 0.95, "t", M.VOCAB)
    assert all(isinstance(r, Gen) and (r.temperature, r.top_p) == (0.6, 0.95) for r in reqs)
    outs = eng.generate(reqs)
    for r, o in zip(reqs, outs):  # the end token follows a position in [start, end)
        end_at = len(r.prompt.split()) + o.n_tokens
        assert 14 <= end_at <= 26 and o.finish == "stop"
    fixed = M.variant(eval_model, tmp_path / "fixed", start=10**9, end=10**9 + 1, temperature=0.6)
    eng = engine(str(fixed), "eager", 2, "float32", "cpu")
    probe = step_time(eng, 40, 2, 2, 6, "cpu", M.VOCAB, (0.6, 0.95))
    assert (probe["prompt_tokens"], probe["steps_timed"], probe["batch"]) == (34, 4, 2) and "step_ms" in probe


def test_the_eval_bench_keeps_inside_its_budget(tmp_path):
    """Each part starts only with its minimum left and stops at its limit; the JSON names the
    device, the commit, the protocol's sampling and how lengths are forced."""
    import bench_gpu_eval

    args = ["--shape", "tiny", "--decodings", "eager", "--short-prompts", "2", "--short-new", "3"]
    args += ["--eager-prompts", "2", "--positions", "24", "--step-batch", "1", "--step-lengths", "2,4"]
    args += ["--long-prompts", "2", "--long-min", "4", "--long-max", "12", "--prompt-tokens", "4,6"]
    out = bench_gpu_eval.main([*args, "--budget", "1", "--out", str(tmp_path / "e.json")])
    assert [s.split(":")[0] for s in out["time"]["skipped"]] == [
        "short",
        "steps_eager",
        "long",
        "steps_compiled",
    ]
    assert out["targets"]["short_new_tokens_per_s"]["pass"] is None and out["commit"]
    assert out["sampling"] == {"temperature": 0.6, "top_p": 0.95} and out["vocab"] == 151936
    assert "forced_end.py" in out["lengths"]["how"] and out["lengths"]["long"]["max_new"] == 12
    out = bench_gpu_eval.main([*args, "--out", str(tmp_path / "e2.json")])
    assert out["short"]["eager"]["new_tokens"] == 6 and out["short"]["eager"]["ended_by_budget"] == 2
    assert out["steps"]["eager"]["24"]["steps_timed"] == 2
    assert out["long"]["eager"]["ended_by_eos"] == 2 and out["long"]["eager"]["length_max"] <= 12
    assert out["targets"]["long_new_tokens_per_s"]["value"] == out["long"]["eager"]["new_tokens_per_s"]


def test_a_part_past_its_limit_is_stopped_where_it_is():
    import time

    from gpu_eval.workloads import Deadline, deadline

    started = time.perf_counter()
    with pytest.raises(Deadline, match="limit of 0 s"), deadline(0.2):
        while True:
            time.sleep(0.01)
    assert time.perf_counter() - started < 5


def test_a_setting_past_the_training_budget_is_stopped_and_the_rest_skipped(tmp_path, monkeypatch):
    """A setting that runs past --budget despite its estimate is stopped where it is (the JSON
    keeps it as ``stopped``) and every later one is skipped for time, inside the budget."""
    import time

    import bench_gpu_train
    from transformers import Qwen2Config  # noqa: F401  (what main imports: the budget is its own)

    from limo_exp.hardware import gpu  # noqa: F401
    from limo_exp.tracking import run_log  # noqa: F401
    from limo_exp.training import loss, shapes  # noqa: F401

    def never_ends(*_a, **_k):
        while True:
            time.sleep(0.05)

    monkeypatch.setattr(bench_gpu_train, "measure", never_ends)
    args = ["--shape", "tiny", "--seq", "128", "--rounds", "1", "--settings", "limo_16k,limo_b8"]
    out = bench_gpu_train.main([*args, "--budget", "20", "--out", str(tmp_path / "g.json")])
    first = out["runs"]["limo_16k"][0]  # stopped; skipped only where imports alone took the budget
    assert first.get("stopped", "").startswith("stopped at its limit") or first["skipped"].startswith(
        "time budget"
    )
    assert out["runs"]["limo_b8"][0]["skipped"].startswith("time budget: no estimate, 0 s of 20 left")
