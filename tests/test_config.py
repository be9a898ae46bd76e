"""Every config option, experiment and sweep composes; the run key ignores non-semantic keys."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR, REPO, compose

GROUPS = [
    "pool",
    "quality",
    "selection",
    "model",
    "train",
    "eval",
    "tracking",
    "paths",
    "curation",
    "experiment",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# options with a mandatory value (???) of their own, composed with one
NEEDS = {"local_path": ["model.path=/x"], "hub": ["model.hub_id=org/name"], "distilled": ["pool.file=/x"]}


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(group):
    opts = options(group)
    assert opts, f"conf/{group}/ is empty"
    for opt in opts:
        cfg = compose([f"{group}={opt}", *NEEDS.get(opt, [])])
        assert cfg.data.n_samples > 0
        if group == "model":
            assert cfg.model.trust_remote_code is False  # off unless a model config turns it on
            if cfg.model.source == "hub":
                assert "/" in cfg.model.hub_id


def test_real_target_models_load_by_hub_id():
    ids = {compose([f"model={m}"]).model.get("hub_id") for m in options("model")}
    assert {"Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-Math-1.5B-Instruct"} <= ids


def test_experiment_files_start_with_their_command():
    for p in (CONF_DIR / "experiment").glob("*.yaml"):
        lines = p.read_text().splitlines()
        assert lines[0] == "# @package _global_", p
        assert "limo-exp" in lines[1] or "make" in lines[1], (
            f"{p}: line 2 should name the command that runs it"
        )


def test_sweeps_compose_at_every_grid_point():
    """sweeps/*.yaml: the file and every value of every swept key compose (before a cluster queue sees them)."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    sweeps = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))
    assert {"less_is_more", "quality_tiers", "pool_sources", "small_models"} <= set(sweeps)
    for name in sweeps:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hcompose(config_name="config", overrides=[f"sweep={name}"], return_hydra_config=True)
        grid = cfg.hydra.sweeper.params
        assert grid, f"sweeps/{name}.yaml sweeps nothing"
        for key, values in grid.items():
            for v in str(values).split(","):
                point = compose([f"sweep={name}", f"{key}={v.strip()}"])
                assert point.study == cfg.study


def test_launchers_compose():
    for launcher in ("parallel", "slurm"):
        cfg = compose([f"hydra/launcher={launcher}"])
        assert cfg is not None


def resolved(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose(overrides), resolve=True)


def test_run_key_ignores_paths_and_tracking():
    from limo_exp.identity import run_key

    a = resolved(["paths.output_root=/tmp/a"])
    b = resolved(["paths.output_root=/tmp/b", "tracking=disabled", "force=true"])
    c = resolved(["data.n_samples=17"])
    assert run_key(a, "fp") == run_key(b, "fp")
    assert run_key(a, "fp") != run_key(c, "fp")
    assert run_key(a, "fp") != run_key(a, "other-pool")
    assert run_key(a, "fp", "bench-a") != run_key(a, "fp", "bench-b")  # other benchmark content: a new run


def test_unknown_model_lists_valid_options():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose(["model=gpt5"])
    assert "tiny_random" in str(err.value) and "smollm2_135m_instruct" in str(err.value)


def test_notebooks_are_committed_without_outputs():
    import json

    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        cells = json.loads(nb.read_text())["cells"]
        assert all(
            not c.get("outputs") and c.get("execution_count") is None
            for c in cells
            if c["cell_type"] == "code"
        )
        assert any("load_study" in "".join(c["source"]) for c in cells)  # reads MLflow, not copied numbers


def test_run_keys_are_pinned():
    """Keys change only when what a run computes changes: a relaunched sweep skips what it ran.

    History: the layout move (b6cb685) kept the keys of c63486f (7cde3bead8e8f963ae39, demo
    d662d7f1907d733c37bc); train.master_dtype / train.optimizer (fp32 master weights, which
    change GPU training), train.global_batch_size, train.loss_impl, the token-budget micro-batches
    and gradient_checkpointing=auto gave new training keys; eval.revision and pool.revision (hub pins)
    new keys for both. (Benchmark fingerprints also changed then: they hash canonical items.) The
    selection group (selection.strategy, default random: the same records as before) gave new
    training keys (60c9261d4206a6555175, demo 828a2473dcb4ade2328a before it). The evaluation
    protocol's new keys (eval.budget, per-task num_samples, batch_size=auto) gave new keys for
    both (d4b68a37701c44a5fcf2, eval e766f26df7b9fd0c4240, demo fcf52c140da1f3ef5295 before);
    train.save and eval.store left the key then (keeping a checkpoint or a response changes no
    result). The demo became the arithmetic study (demo d800a4ae9cb1cf75cbe3 before; then
    f00c19d30e2c3478a3d3 with eval batch 16). train.format (and its prefixes) left every key as it
    was: at format=plain they stay out of the key (identity.NEUTRAL_LEAVES; tests/test_multitask.py)."""
    from limo_exp.identity import RunSpec

    spec = RunSpec.parse(resolved(["debug=fast"]))
    assert spec.key("fp", "bench") == "9ba4e69708773df3c477"
    assert spec.eval_key("bench") == "5d286b6c8536fcfe9cc6"
    assert RunSpec.parse(resolved(["experiment=demo"])).key("fp", "bench") == "422a92b3798513d66ae8"
    for not_semantic in ("train.save=false", "eval.store=off"):
        assert RunSpec.parse(resolved(["debug=fast", not_semantic])).key("fp", "bench") == spec.key(
            "fp", "bench"
        )


def test_labels_are_not_in_the_run_key():
    """A label is what a table calls a model or tier: renaming one keeps every run key (and the
    stores written before labels existed), and the label is parsed into the schema."""
    from limo_exp.identity import RunSpec, is_semantic

    base = ["experiment=demo"]
    spec = RunSpec.parse(resolved(base))
    assert (spec.config.model.label, spec.config.quality.label) == ("SmolLM2-135M-Instruct", "short CoT")
    renamed = RunSpec.parse(
        resolved(base + ["model.label=Smol 135M", "quality.label=short", "report.labels={short: S}"])
    )
    assert renamed.config.model.label == "Smol 135M" and renamed.config.report.labels == {"short": "S"}
    assert renamed.key("fp", "bench") == spec.key("fp", "bench") == "422a92b3798513d66ae8"
    assert renamed.eval_key("bench") == spec.eval_key("bench")
    assert not is_semantic("model.label") and not is_semantic("quality.label") and is_semantic("model.name")


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_parses_into_the_schema(group):
    from limo_exp.identity import RunSpec

    for opt in options(group):
        RunSpec.parse(resolved([f"{group}={opt}", *NEEDS.get(opt, [])]))


@pytest.mark.parametrize(
    "override,message",
    [
        ("+train.lrr=1e-5", r"unknown config key train.lrr; valid keys of train: \['name', 'lr',"),
        (
            "+eval.synthetic.size=3",
            r"unknown config key eval.synthetic.size; valid keys of eval.synthetic: \['n', 'seed'\]",
        ),
        ("train.lr=fast", r"train.lr: expected float, got str 'fast'"),
        ("data.n_samples=1.5", r"data.n_samples: expected int, got float 1.5"),
        ("eval.tasks=limo_math500", r"eval.tasks: expected a list, got str"),
        ("+train.lora.r=x", r"train.lora.r: expected int, got str 'x'"),
        ("+banana=1", r"unknown config key banana; valid keys of the config: \['pool',"),
        ("model=local_path", r"model.path must be set \(it is \?\?\? in the config\)"),
        ("model=hub", r"model.hub_id must be set \(it is \?\?\? in the config\)"),
        ("+model.revision=v1", r"model.revision is for model.source=hub, not model.source=tiny_random"),
        ("model.source=ftp", r"model.source='ftp' is not one of"),
        ("eval.backend=tpu", r"eval.backend='tpu' is not one of"),
        (
            "train.master_dtype=bfloat16",
            r"train.master_dtype=bfloat16 with train.optimizer=adamw loses most updates",
        ),
    ],
)
def test_bad_config_names_the_key(override, message):
    from limo_exp.config import ConfigError
    from limo_exp.identity import RunSpec

    with pytest.raises(ConfigError, match=message):
        RunSpec.parse(resolved([override]))


def test_bad_config_fails_before_any_data_is_loaded(small_cfg, monkeypatch):
    from limo_exp.commands.run import run
    from limo_exp.config import ConfigError
    from limo_exp.data import pools

    monkeypatch.setattr(
        pools, "load_pool_from_config", lambda *a: pytest.fail("pool loaded before the check")
    )
    with pytest.raises(ConfigError, match="train.max_steps: expected int"):
        run(small_cfg("train.max_steps=two"))


def test_a_global_batch_that_does_not_divide_fails_before_any_data(small_cfg, monkeypatch):
    from limo_exp.commands.run import run
    from limo_exp.data import pools

    monkeypatch.setattr(
        pools, "load_pool_from_config", lambda *a: pytest.fail("pool loaded before the check")
    )
    with pytest.raises(ValueError, match="train.global_batch_size=5 is not a multiple of train.batch_size=2"):
        run(small_cfg("train.global_batch_size=5"))


def test_a_liger_loss_where_liger_cannot_run_fails_before_any_data(small_cfg, monkeypatch):
    from limo_exp.commands.run import run
    from limo_exp.data import pools

    monkeypatch.setattr(
        pools, "load_pool_from_config", lambda *a: pytest.fail("pool loaded before the check")
    )
    # this machine has neither CUDA nor liger-kernel: the message says the first that is missing
    with pytest.raises(ValueError, match=r"train.loss_impl=liger: liger-kernel is not installed"):
        run(small_cfg("train.loss_impl=liger"))
