"""The ablation axes of issue 36, each in the run key and selecting exactly what it says:
verification (kept / dropped / inverted), trace length (truncate, a length band in words),
answers per question, question mixtures (pool=mix) and the teacher of a distilled pool."""

from __future__ import annotations

import pytest
from conftest import compose
from omegaconf import OmegaConf

from limo_exp.config import CurationConfig
from limo_exp.curation.stages import curate, verify_answers
from limo_exp.data.records import Record, Solution
from limo_exp.identity import RunSpec
from limo_exp.typed import ConfigError

FAST = ["debug=fast"]
FAST_KEY = (
    "9ba4e69708773df3c477"  # tests/test_config.py pins it: the new axes at their neutral values keep it
)


def key(*overrides: str) -> str:
    return RunSpec.parse(OmegaConf.to_container(compose([*FAST, *overrides]), resolve=True)).key(
        "fp", "bench"
    )


def rec(problem: str, answer: str, *texts: str, kind: str = "long", **meta) -> Record:
    return Record.new(problem, answer, [Solution(t, kind) for t in texts], **meta)


NO_STAGES = {
    "dedup": {"exact": False, "near": False},
    "decontam": {"enabled": False},
    "quality": {"enabled": False},
}


# -- verification: kept / dropped / inverted ------------------------------------------------------


def test_verify_mode_is_in_the_run_key_and_kept_is_the_old_key():
    kept, dropped, inverted = (key(f"curation.verify.mode={m}") for m in ("kept", "dropped", "inverted"))
    assert kept == key() == FAST_KEY  # the default: runs logged before the mode keep their keys
    assert len({kept, dropped, inverted}) == 3
    assert key("curation.verify.enabled=false") != kept  # the older spelling of dropped: a key of its own
    with pytest.raises(ConfigError, match="curation.verify.mode=inverted grades answers"):
        CurationConfig.from_dict({"verify": {"enabled": False, "mode": "inverted"}})
    with pytest.raises(ConfigError, match=r"curation.verify.mode='wrong' is not one of"):
        CurationConfig.from_dict({"verify": {"mode": "wrong"}})


def test_inverted_keeps_only_the_wrong_answers():
    pool = [
        rec("p1", "1/2", "so \\boxed{\\frac{1}{2}}", "so \\boxed{0.6}", "then \\boxed{3}"),
        rec("p2", "7", "\\boxed{7}"),  # every solution right: nothing to keep
        rec("p3", "", "\\boxed{3}"),  # no gold answer: cannot be verified
        rec("p4", "12", "\\boxed{13}"),
    ]
    kept, extra = verify_answers(pool, mode="inverted")
    assert [(r.problem, [s.text for s in r.solutions]) for r in kept] == [
        ("p1", ["so \\boxed{0.6}", "then \\boxed{3}"]),
        ("p4", ["\\boxed{13}"]),
    ]
    assert extra == {"solutions_in": 6, "solutions_out": 3}
    right, _ = verify_answers(pool, mode="kept")
    assert [(r.problem, len(r.solutions)) for r in right] == [("p1", 1), ("p2", 1)]


@pytest.mark.parametrize(
    ("mode", "stage", "out"),
    [("kept", "verify", 1), ("dropped", None, 2), ("inverted", "verify_inverted", 1)],
)
def test_curation_runs_the_mode_asked(mode, stage, out):
    pool = [rec("p1", "2", "\\boxed{2}"), rec("p2", "5", "\\boxed{6}")]
    cfg = CurationConfig.from_dict({**NO_STAGES, "verify": {"mode": mode}})
    curated = curate(pool, cfg, {})
    assert [s["stage"] for s in curated.funnel] == ["load"] + ([stage] if stage else [])
    assert len(curated.records) == out
    if mode == "inverted":
        assert curated.records[0].problem == "p2"
