"""Hub models without a YAML: ``model=hub model.hub_id=<id>`` or ``model=<org>/<name>[@<revision>]``;
the revision reaches every ``from_pretrained``, changes the run key, and the commit read is recorded.
No network: a fake hub cache folder holds the tiny random model at two commits."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import compose
from omegaconf import OmegaConf

from limo_exp.cli import checkpoint_overrides

SHA_V1, SHA_MAIN = "a1" * 20, "b2" * 20


@pytest.fixture
def fake_hub(tmp_path, tiny_model, monkeypatch):
    """``limo/tiny`` in a hub cache folder: tag v1 -> SHA_V1 (64 positions), main -> SHA_MAIN (128)."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--limo--tiny"
    for sha, positions in ((SHA_V1, 64), (SHA_MAIN, 128)):
        snap = repo / "snapshots" / sha
        shutil.copytree(tiny_model, snap)
        cfg = json.loads((snap / "config.json").read_text())
        (snap / "config.json").write_text(json.dumps(cfg | {"max_position_embeddings": positions}))
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(SHA_V1)
    (repo / "refs" / "main").write_text(SHA_MAIN)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return "limo/tiny"


def test_hub_shorthand_parses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoint_overrides(["model=limo/tiny@v1", "seed=1"]) == [
        "model=hub",
        "model.hub_id=limo/tiny",
        "model.revision='v1'",
        "seed=1",
    ]
    assert checkpoint_overrides(["model=Qwen/Qwen2.5-0.5B"]) == [
        "model=hub",
        "model.hub_id=Qwen/Qwen2.5-0.5B",
    ]
    (tmp_path / "org" / "local").mkdir(parents=True)  # a folder here is not a hub id
    for kept in (["model=org/local"], ["model=tiny_random"], ["model=a/b/c"], ["model.hub_id=x/y"]):
        assert checkpoint_overrides(kept) == kept
    cfg = OmegaConf.to_container(compose(checkpoint_overrides(["model=limo/tiny@v1"])), resolve=True)
    assert cfg["model"]["source"] == "hub" and "path" not in cfg["model"]
    assert (cfg["model"]["name"], cfg["model"]["hub_id"], cfg["model"]["revision"]) == ("limo/tiny",) * 2 + (
        "v1",
    )


def test_run_key_changes_with_the_revision():
    from limo_exp.identity import RunSpec

    def key(*extra: str) -> str:
        cfg = OmegaConf.to_container(compose(["model=hub", "model.hub_id=limo/tiny", *extra]), resolve=True)
        return RunSpec.parse(cfg).key("pool", "bench")

    keys = {key(), key("model.revision=v1"), key(f"model.revision={SHA_V1}")}
    assert len(keys) == 3
    assert key("model.revision=v1") == key(*checkpoint_overrides(["model=limo/tiny@v1"])[2:])


def test_revision_reaches_from_pretrained(fake_hub, monkeypatch):
    import transformers

    from limo_exp import training
    from limo_exp.config import ModelConfig, TrainConfig

    seen = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        real = cls.from_pretrained

        def spy(*a, _real=real, _cls=cls.__name__, **kw):
            seen.append((_cls, a[0], kw.get("revision")))
            return _real(*a, **kw)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    model_cfg = ModelConfig(name="limo/tiny", source="hub", hub_id=fake_hub, revision="v1")
    base = training.resolve(model_cfg, "unused")
    net, _ = training.load_for_training(base, model_cfg, TrainConfig())
    tok = training.load_tokenizer(base, revision="v1")
    assert net.config.max_position_embeddings == 64  # the v1 snapshot, not main's 128
    assert tok.chat_template
    assert set(seen) == {("AutoTokenizer", fake_hub, "v1"), ("AutoModelForCausalLM", fake_hub, "v1")}
    net, _ = training.load(base)  # no revision: the default branch
    assert net.config.max_position_embeddings == 128


def test_commit_read_is_recorded_offline(fake_hub, monkeypatch):
    from limo_exp.data import hub

    monkeypatch.setattr(hub, "_LOADED", {})
    assert hub.model_commit(fake_hub, "v1") == SHA_V1
    assert hub.model_commit(fake_hub, None) == SHA_MAIN
    assert hub.model_commit(fake_hub, "v9") == "v9 (unresolved)"  # not in the cache and offline
    hub.record_model(fake_hub, "v1")
    assert hub.as_tags(hub.loaded()) == {"limo.hub.limo/tiny": SHA_V1}


def test_evaluation_reads_the_revision_too(fake_hub):
    from limo_exp.evaluation.generation.backend import model_context_length

    assert model_context_length(fake_hub, revision="v1") == 64
    assert model_context_length(fake_hub) == 128


def test_limo_exp_eval_evaluates_the_pinned_revision(fake_hub, tmp_path, monkeypatch):
    """An untrained hub model at a pinned revision: the evaluation reads that snapshot (its 64
    positions, not main's 128) and its fingerprint names the revision."""
    from conftest import compose

    from limo_exp.commands.eval import run_eval

    cfg = compose(
        ["model=hub", f"model.hub_id={fake_hub}", "model.revision=v1", f"paths.output_root={tmp_path}",
         "tracking=disabled", "eval.limit=1", "eval.max_gen_toks=4"]
    )  # fmt: skip
    out = run_eval(cfg)
    settings = json.loads(next(tmp_path.glob("evals/*/settings.json")).read_text())
    assert settings["model_context_length"] == "64"
    assert "synthetic/accuracy" in out["metrics"]
