"""``limo-exp plan``: the sweep's points, costs and power before launch, without a model or an
MLflow run; its counts equal what the runs then log."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from limo_exp.analysis.plan import hours_text, markdown, write
from limo_exp.commands import plan as plan_cmd
from limo_exp.commands.run import run
from limo_exp.config import ConfigError

SWEEPS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


def _paths(tmp_path, cache_dir) -> list[str]:
    return [
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        f"paths.results_dir={tmp_path}/r",
    ]


def _no_model(monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("plan loaded a model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def test_the_grid_is_the_sweep_files_axes_times_the_command_lines():
    params = {"quality": "answer_only,short", "data.n_samples": "4,8"}
    points = plan_cmd.grid(["experiment=demo", "data.n_samples=8,16,32", "seed=1"], params)
    assert points[0] == ["experiment=demo", "seed=1", "quality=answer_only", "data.n_samples=8"]
    assert len(points) == 6  # 2 tiers x the command line's 3 values of N (it wins over the file's)
    assert points[-1][-2:] == ["quality=short", "data.n_samples=32"]
    assert plan_cmd.grid(["model=tiny_random"], None) == [["model=tiny_random"]]


def test_plan_counts_what_the_runs_then_log(small_cfg, tmp_path, cache_dir, monkeypatch):
    """Training tokens and steps exactly, evaluation responses exactly and their tokens within the
    cap; once the points ran, the plan skips them and prices from their logged figures."""
    # eval.store=off: the responses are generated here (another test's stored ones would log no tokens/s)
    overrides = [
        "debug=fast",
        "study=test",
        "eval.store=off",
        *_paths(tmp_path, cache_dir),
        "data.n_samples=4,8",
    ]
    with monkeypatch.context() as m:
        _no_model(m)
        first, _ = plan_cmd.make_plan(overrides)
    assert not (tmp_path / "mlruns.db").exists()  # no store is made, no run
    assert [p.name for p in first.points] == ["data.n_samples=4", "data.n_samples=8"]
    assert [p.status for p in first.points] == ["left", "left"]
    assert first.points[0].train.source.startswith("the tokenizer of ")
    assert first.points[0].train_hours.source.startswith("no earlier run of tiny_random on cpu")

    logged = {}
    for p in first.points:
        out = run(small_cfg("eval.store=off", p.overrides[-1]))
        logged[p.name] = out
        assert out["run_key"] == p.run_key
        m = out["metrics"]
        assert m["train/seen_tokens"] == p.train.seen_tokens
        assert m["train/target_tokens"] == p.train.target_tokens
        assert m["train/steps"] == p.train.steps
        tasks = p.eval.per_task
        assert {t: m[f"eval/{t}/n_questions"] for t in tasks} == {t: float(n) for t, n in tasks.items()}
        generated = sum(m[f"eval/{t}/response_tokens_mean"] * n for t, n in tasks.items())
        assert generated <= p.eval.max_tokens

    again, _ = plan_cmd.make_plan(overrides)
    assert [(p.status, p.run_id) for p in again.points] == [
        ("finished", logged[p.name]["run_id"]) for p in first.points
    ]
    assert again.hours == 0.0  # nothing left to run
    fresh, _ = plan_cmd.make_plan([*overrides[:-1], "data.n_samples=6"])  # a new point, priced from the store
    p = fresh.points[0]
    assert p.status == "left"
    assert p.train_hours.source == "store: 2 earlier run(s) of tiny_random on cpu"
    per_token = sorted(
        o["metrics"]["cost/device_hours"] / o["metrics"]["train/seen_tokens"] for o in logged.values()
    )
    assert p.train_hours.value == pytest.approx(p.train.seen_tokens * sum(per_token) / 2)
    assert p.eval.expected_tokens.source.startswith(
        "store: median response length of earlier runs of tiny_random, "
    )
    assert p.eval_hours.source.startswith("store: generation tokens/s")


@pytest.mark.parametrize("sweep", SWEEPS)
def test_plan_on_every_sweep_loads_no_model_and_makes_no_run(sweep, tmp_path, cache_dir, monkeypatch):
    _no_model(monkeypatch)
    plan, base = plan_cmd.make_plan([f"sweep={sweep}", *_paths(tmp_path, cache_dir)])
    assert len(plan.points) > 1 and plan.detect
    assert all(p.status in ("left", "fails") for p in plan.points)
    assert not (tmp_path / "mlruns.db").exists()
    files = write(plan, tmp_path / "plan")
    got = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert got["summary"] == plan.summary() and len(got["points"]) == len(plan.points)
    assert [f.name for f in files] == ["plan.md", "plan.json"]


def test_less_is_more_priced_on_gpus_says_what_aime24_cannot_detect(tmp_path, cache_dir):
    """Its 4 settings x 3 seeds: the report averages a setting's 3 runs per problem, so AIME24
    resolves 20 points (not one run's 27) and the suite's headline 5.5; more seeds are priced as
    runs (a training and its evaluation each), more samples as evaluations of every run."""
    plan, _ = plan_cmd.make_plan(["sweep=less_is_more", "plan.device=H200", *_paths(tmp_path, cache_dir)])
    assert plan.device == "H200" and plan.gpus == 8  # accelerate=fsdp: 8 processes a point
    assert len(plan.points) == 12 and plan.hours is not None and plan.hours > 0
    point = plan.points[0]
    assert point.train_hours.source.startswith("FLOP model: 6 x 32.76B params")
    aime = next(d for d in plan.detect if d.benchmark == "aime24")
    assert (aime.problems, aime.samples, aime.seeds, aime.mdd) == (30, 1, 3, 0.2)
    assert aime.protocol_text() == "greedy, one sample, 3 seeds averaged per problem"
    assert any(f.startswith("pooling aime24, aime25, amc23 (100 problems)") for f in aime.fixes)
    suite = plan.detect[-1]
    assert (suite.benchmark, suite.problems, suite.mdd) == ("suite mean", 1473, 0.055)
    assert suite.baseline_source == "the benchmarks' baselines, unweighted"
    run_hours = statistics.median(p.hours for p in plan.points)
    seeds = next(f for f in suite.fixes if f.startswith("6 seeds a setting"))
    assert "(12 more runs, each a training and its evaluation)" in seeds
    assert seeds.endswith(f"+{hours_text(12 * run_hours)} device-hours")
    gpqa = next(d for d in plan.detect if d.benchmark == "gpqa_diamond")
    samples = next(f for f in gpqa.fixes if f.startswith("8 samples a problem"))
    eval_share = point.eval_hours.value * 198 / 1473 * 7 * 12  # 7 more samples, every one of 12 runs
    assert samples.endswith(f"+{hours_text(eval_share)} device-hours over the sweep's 12 runs")
    assert "detects >= 5.5 points on the suite mean, >= 20 points on aime24" in plan.summary()
    assert "e+" not in plan.summary() and "e+" not in markdown(plan)

    one, _ = plan_cmd.make_plan(
        [
            "sweep=less_is_more",
            "plan.device=H200",
            "data.n_samples=100",
            "seed=0",
            *_paths(tmp_path, cache_dir),
        ]
    )
    aime = next(d for d in one.detect if d.benchmark == "aime24")
    assert (len(one.points), aime.seeds, aime.mdd) == (1, 1, 0.27)  # one run a setting: exact McNemar
    assert aime.test.startswith("exact McNemar") and one.detect[-1].mdd == 0.075  # the suite mean
    three = "3 seeds a setting, averaged per problem (2 more runs, each a training and its evaluation)"
    assert any(f.startswith(three) for f in one.detect[-1].fixes)


def test_points_that_will_fail_are_found_before_launch(tmp_path, cache_dir):
    base = ["debug=fast", *_paths(tmp_path, cache_dir)]
    plan, _ = plan_cmd.make_plan([*base, "data.n_samples=8,100000"])
    assert [p.status for p in plan.points] == ["left", "fails"]
    assert "asked for 100000 records" in plan.points[1].error
    assert any(w.startswith("data.n_samples=100000: will fail: ") for w in plan.warnings)

    plan, _ = plan_cmd.make_plan([*base, f"eval.data_dir={tmp_path}/none"])
    assert plan.points[0].status == "fails" and "eval.data_dir" in plan.points[0].error

    plan, _ = plan_cmd.make_plan([*base, "model=hub", "model.hub_id=nobody/no-such-model"])
    assert any("unknown model: model " in w and "model.shape" in w for w in plan.warnings)
    assert plan.points[0].train_hours.value is None and plan.hours is None


def test_run_refuses_a_sweep_over_its_gpu_budget(tmp_path, cache_dir):
    cmd = [sys.executable, "-m", "limo_exp", "run", "--multirun", "debug=fast", "data.n_samples=4,8"]
    cmd += [*_paths(tmp_path, cache_dir), "plan.device=H100", "plan.max_gpu_hours=1e-12"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "plan: 2 points (2 to run, 0 already FINISHED, 0 will fail)" in proc.stdout
    assert "over plan.max_gpu_hours=1e-12: nothing started" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


# ---- the door: help, a sweep named as an experiment, devices, the summary line ----------------


def test_plan_help_prints_the_plans_keys_and_a_sweep_named_as_an_experiment_is_one_line(tmp_path):
    """End to end through the console entry: no Hydra traceback for either."""
    cmd = [sys.executable, "-m", "limo_exp", "plan"]
    got = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert got.returncode == 0, got.stderr[-2000:]
    lines = got.stdout.splitlines()
    assert lines[0] == "usage: limo-exp plan [run's overrides] [--multirun]"
    keys = [line.split()[0] for line in lines if line.startswith("  plan.")]
    assert keys[:3] == ["plan.device", "plan.gpus", "plan.mfu"] and "plan.wanted_difference" in keys
    assert "  plan.alpha              0.05   the paired tests' level" in lines
    assert any(line.startswith("sweeps (sweep=<name>): ") and "less_is_more" in line for line in lines)
    got = subprocess.run(
        [*cmd, "--multirun", "experiment=less_is_more"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert (
        got.stderr.strip()
        == "limo-exp: experiment=less_is_more: less_is_more is a sweep: write sweep=less_is_more"
    )
    with pytest.raises(
        SystemExit, match=r"^limo-exp: model=nope: no conf/model/nope.yaml; model is one of: hub, "
    ):
        plan_cmd.main(["model=nope"])
    with pytest.raises(
        SystemExit, match=r"^limo-exp plan: Could not override 'trian.lr'. \(limo-exp plan --help\)$"
    ):
        plan_cmd.main(["trian.lr=1"])


def _here(monkeypatch, name: str) -> None:
    """This machine's device as the plan reads it (tracking.run_log.device_name)."""
    from limo_exp.tracking import run_log

    monkeypatch.setattr(run_log, "device_name", lambda: name)


def test_devices_a_sweep_for_gpus_is_priced_on_one_without_a_gpu_here(tmp_path, cache_dir, monkeypatch):
    """No GPU here: a sweep of 1B+ parameter models with no accelerate topology (small_models)
    is priced on H100s, said in one line, as is the missing topology; the demo stays on the CPU;
    a device in any case is the data sheet's name, an unknown one a line naming the choices."""
    _here(monkeypatch, "cpu")
    small = [
        "sweep=small_models",
        "model=qwen2_5_7b_instruct",
        "data.n_samples=100",
        *_paths(tmp_path, cache_dir),
    ]
    plan, _ = plan_cmd.make_plan(small)
    assert (plan.device, plan.gpus, len(plan.points)) == ("H100", 1, 1) and plan.hours is not None
    assert plan.warnings[:2] == [
        "no GPU here: priced on H100s, the GPUs the sweep is meant for (7.6B parameters); "
        "plan.device=H200|A100|L40S|cpu to choose",
        "no accelerate topology: each point is priced as one process on one H100; for several GPUs a "
        "point name one (accelerate=fsdp: 8, accelerate=ddp, accelerate=deepspeed_zero3)",
    ]
    # 7.6B trained in full on one H100 does not fit: the summary counts it, never "0 will fail"
    assert plan.points[0].memory.fits is False
    assert "(1 to run, 0 already FINISHED, 1 will fail: 1 over H100's memory as set" in plan.summary()
    choice = getattr(plan.points[0].memory, "choice", None)  # Memory.choice: the memory helper's (issue 34)
    assert (
        choice is None
        or f"fits with {choice if isinstance(choice, str) else ' '.join(choice)})" in plan.summary()
    )
    assert "H100-hours (assumed: training tokens and evaluation tokens)" in plan.summary()

    demo, _ = plan_cmd.make_plan(["debug=fast", *_paths(tmp_path, cache_dir)])
    assert demo.device == "cpu" and not any("no GPU here" in w for w in demo.warnings)
    assert "0 will fail)" in demo.summary()

    _here(monkeypatch, "NVIDIA H100 80GB HBM3")  # on a GPU machine: its GPU, the topology said
    plan, _ = plan_cmd.make_plan([*small, "plan.device=auto"])
    assert plan.device == "H100" and plan.warnings[0].startswith("no accelerate topology: ")
    plan, _ = plan_cmd.make_plan([*small, "plan.device=h200", "accelerate=fsdp"])
    assert (plan.device, plan.gpus) == ("H200", 8) and not any("topology" in w for w in plan.warnings)
    with pytest.raises(
        ConfigError, match=r"^plan.device='h101' is no device the plan knows: use auto, cpu or one of H"
    ):
        plan_cmd.make_plan([*small, "plan.device=h101"])


def test_hours_are_written_for_people():
    assert [hours_text(h) for h in (None, 0, 4e-6, 0.0042, 0.0123, 4.567, 99.94, 123.4, 12345.6)] == [
        "unknown",
        "0",
        "< 0.001",
        "0.004",
        "0.0123",
        "4.57",
        "99.9",
        "123",
        "12,346",
    ]
    from limo_exp.analysis.plan_figures import _cost

    assert _cost(1e2) == "+100 device-hours" and _cost(None) == "+? device-hours"


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("llama", {}),
        ("llama", {"attention_bias": True, "mlp_bias": True, "head_dim": 32}),
        ("mistral", {"tie_word_embeddings": True}),
        ("qwen2", {"tie_word_embeddings": False}),
    ],
)
def test_parameters_by_arithmetic_equal_a_meta_build(kind, extra):
    """plan counts a dense decoder's parameters from config.json alone (no modeling code): the same
    number as the built model's ``parameters()``; the Qwen YAMLs' shapes give the published sizes."""
    from transformers import AutoConfig

    from limo_exp.training.shapes import count_params, meta_params

    sizes = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4}
    config = AutoConfig.for_model(kind, **sizes, num_key_value_heads=2, vocab_size=100, **extra)
    assert count_params(config) == meta_params(config)


def test_the_qwen_shapes_give_the_published_sizes(cache_dir):
    from omegaconf import OmegaConf

    from limo_exp import CONF_DIR
    from limo_exp.config import ModelConfig
    from limo_exp.training.shapes import count_params, model_config

    got = {}
    for name in ("qwen2_5_32b_instruct", "qwen2_5_7b_instruct", "qwen2_5_math_1_5b_instruct"):
        yaml = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "model" / f"{name}.yaml"))
        config, where = model_config(ModelConfig.from_dict(yaml, "model"), cache_dir)
        assert where == f"model.shape of {name}"
        got[name] = count_params(config)
    assert got == {
        "qwen2_5_32b_instruct": 32_763_876_352,
        "qwen2_5_7b_instruct": 7_615_616_512,
        "qwen2_5_math_1_5b_instruct": 1_543_714_304,
    }


def test_an_example_over_the_token_budget_is_a_failing_point(tmp_path, cache_dir):
    base = ["debug=fast", *_paths(tmp_path, cache_dir), "train.max_tokens_per_micro_batch=16"]
    plan, _ = plan_cmd.make_plan(base)
    assert plan.points[0].status == "fails"
    assert "more than train.max_tokens_per_micro_batch=16" in plan.points[0].error


def test_the_plan_does_not_import_transformers_model_code(tmp_path, cache_dir):
    """Registering limo_varlen imports transformers' modeling code (~4 s of a 15 s plan): the plan
    names the attention a GPU run reads boundaries with, and imports none of it."""
    code = (
        "import sys\n"
        "from limo_exp.commands import plan\n"
        f"plan.make_plan(['sweep=less_is_more', 'data.n_samples=100', 'seed=0', *{_paths(tmp_path, cache_dir)!r}])\n"
        "print(sorted(m for m in ('transformers.modeling_utils', 'limo_exp.training.attention') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]
