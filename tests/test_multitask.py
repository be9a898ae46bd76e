"""train.format=multitask: an answer task and an explain task per example, the loss on each one's target."""

from __future__ import annotations

import pytest
from conftest import compose

from limo_exp.config import TrainConfig
from limo_exp.data.records import Example
from limo_exp.training.batching import prepare
from limo_exp.training.sft_data import IGNORE, tasks

EX = Example("a", "What is 2+3?", "2+3=5, so the answer is \\boxed{5}.", "5", "short")
MULTITASK = TrainConfig(format="multitask", instruction="Reason.", max_length=512)


def _tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _prompt(tok, user: str) -> list[int]:
    msgs = [{"role": "user", "content": user}]
    return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"]


def test_an_example_gives_an_answer_task_then_an_explain_task(tiny_model):
    tok = _tok(tiny_model)
    answer, explain = prepare([EX], tok, MULTITASK)
    for t, prefix, target in (
        (answer, "Answer directly.", "\\boxed{5}"),
        (explain, "Explain step by step.", EX.solution),
    ):
        prompt = _prompt(tok, f"{prefix}\n\nWhat is 2+3?\n\nReason.")  # prefix, problem, instruction
        n = len(prompt)
        assert t.input_ids[:n] == prompt
        assert t.labels[:n] == [IGNORE] * n  # the loss skips the whole prompt ...
        labels = t.labels[n:]
        assert IGNORE not in labels and labels == t.input_ids[n:]  # ... and is on every target token
        assert labels[-1] == tok.eos_token_id and labels.count(tok.eos_token_id) == 1
        assert tok.decode(labels[:-1]) == target
    assert "so the answer is" not in tok.decode(answer.input_ids)  # nothing of the solution
    assert "Explain" not in tok.decode(answer.input_ids) and "Answer directly" not in tok.decode(
        explain.input_ids
    )
    # \boxed{5} is 5 tokens, the solution 15; each + EOS
    assert (answer.n_target, explain.n_target) == (6, 16)


def test_plain_format_is_one_sequence_without_a_prefix(tiny_model):
    tok = _tok(tiny_model)
    (plain,) = prepare([EX], tok, TrainConfig(instruction="Reason.", max_length=512))
    n = len(_prompt(tok, "What is 2+3?\n\nReason."))
    assert plain.labels[:n] == [IGNORE] * n and tok.decode(plain.labels[n:-1]) == EX.solution
    assert [t.name for t in tasks(EX)] == ["plain"]
    assert [t.name for t in tasks(EX, "multitask", "A.", "E.")] == ["answer", "explain"]


def test_an_example_without_an_answer_fails_naming_it(tiny_model):
    tok = _tok(tiny_model)
    bad = Example("no_answer_42", "What is 2+3?", "It is five.", " ", "short")
    with pytest.raises(ValueError, match="example no_answer_42 has no answer, so train.format=multitask"):
        prepare([EX, bad], tok, MULTITASK)
    assert len(prepare([bad], tok, TrainConfig(max_length=512))) == 1  # plain needs no answer


def test_multitask_run_trains_on_two_sequences_per_example(small_cfg):
    """End to end (debug=fast: N=8, 2 steps of 2 sequences) into a throwaway MLflow store: the run
    logs 8 examples and 16 sequences."""
    from mlflow.tracking import MlflowClient

    from limo_exp.commands.run import run

    cfg = small_cfg("train.format=multitask")
    out = run(cfg)
    assert len(out["selected_ids"]) == 8 and out["metrics"]["train/steps"] == 2
    r = MlflowClient(tracking_uri=cfg.tracking.uri).get_run(out["run_id"])
    assert r.info.status == "FINISHED" and r.data.params["train.format"] == "multitask"
    assert r.data.metrics["train/n_examples"] == 8 and r.data.metrics["train/n_sequences"] == 16


def _key(*overrides: str) -> str:
    from omegaconf import OmegaConf

    from limo_exp.identity import RunSpec

    cfg = OmegaConf.to_container(compose(["debug=fast", *overrides]), resolve=True)
    return RunSpec.parse(cfg).key("fp", "bench")


def test_run_key_leaves_out_plain_format_and_keys_multitask():
    plain = _key()
    assert plain == "9ba4e69708773df3c477"  # test_config's pinned key: format=plain keeps old keys
    assert _key("train.answer_prefix=Say it.") == plain  # read only by multitask
    multitask = _key("train.format=multitask")
    assert multitask != plain
    assert _key("train.format=multitask", "train.answer_prefix=Say it.") not in (plain, multitask)


def test_runs_from_before_the_format_are_on_the_plain_curve(tmp_path):
    """A run logged before train.format existed and a plain run logged with it are one setting in a
    report; a multitask run is another."""
    from limo_exp.analysis.study import setting_columns
    from limo_exp.config import TrackingConfig
    from limo_exp.identity import with_neutral_leaves
    from limo_exp.tracking.runs import runs_frame
    from limo_exp.tracking.tracker import Tracker

    old = {"data.n_samples": "8", "train.lr": "1e-05"}
    plain = old | {"train.format": "plain", "train.answer_prefix": "Answer directly."}
    mt = plain | {"train.format": "multitask"}
    neutral = {"train.format": "plain", "eval.hf_decoding": "auto"}  # every neutral leaf a run predates
    neutral |= {"data.answers_per_question": "1", "curation.verify.mode": "kept"}  # issue 36's axes
    neutral |= {"data.min_answers": "None"}
    neutral |= {"quality.truncate": "None", "quality.min_words": "None", "quality.max_words": "None"}
    assert with_neutral_leaves(old) == with_neutral_leaves(plain) == old | neutral
    assert with_neutral_leaves(mt) == mt | {k: v for k, v in neutral.items() if k != "train.format"}
    uri = f"sqlite:///{tmp_path}/m.db"
    t = Tracker(uri, "study", str(tmp_path / "art"))
    for name, params in (("old", old), ("plain", plain | {"data.n_samples": "16"}), ("mt", mt)):
        with t.run(name, {"limo.run_key": name, "limo.kind": "run"}):
            t.log_params(params)
    df = runs_frame(TrackingConfig(enabled=True, uri=uri, experiment="study")).set_index("run_name")
    assert dict(df["train.format"]) == {"old": "plain", "plain": "plain", "mt": "multitask"}
    # the old run is on the plain curve, not on one of its own
    assert setting_columns(df.reset_index()) == ["train.format"]
    assert setting_columns(df.drop("mt").reset_index()) == []  # old and new plain runs: one curve


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.format=bogus", r"train.format='bogus' is not one of \('plain', 'multitask'\)"),
        (
            "train.format=multitask train.explain_prefix=Answer directly.",
            "train.answer_prefix and train.explain_prefix are equal",
        ),
    ],
)
def test_bad_format_config_names_the_key(override, message):
    from omegaconf import OmegaConf

    from limo_exp.config import ConfigError
    from limo_exp.identity import RunSpec

    cfg = OmegaConf.to_container(compose(["debug=fast", *override.split(" ", 1)]), resolve=True)
    with pytest.raises(ConfigError, match=message):
        RunSpec.parse(cfg)
