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


# -- trace length: truncate, a band of lengths in words ----------------------------------------


def config(*overrides: str):
    return RunSpec.parse(OmegaConf.to_container(compose([*FAST, *overrides]), resolve=True)).config


def test_trace_length_is_in_the_run_key():
    keys = [key(o) for o in ("quality.truncate=0.5", "quality.truncate=0.25", "quality.min_words=10")]
    keys.append(key("quality.max_words=200"))
    assert len({FAST_KEY, *keys}) == 5
    for bad, why in (("quality.truncate=0", "expected a fraction in"), ("quality.truncate=1.5", "fraction")):
        with pytest.raises(ConfigError, match=why):
            config(bad)
    with pytest.raises(ConfigError, match="quality.min_words=30, max_words=20"):
        config("quality.min_words=30", "quality.max_words=20")


def test_truncate_cuts_at_the_stated_fraction_where_the_text_allows():
    from limo_exp.selection.traces import truncate

    steps = "Step 1: add 2 and 3.\nStep 2: that is 5.\nSo the answer is \\boxed{5}."  # 67 characters
    assert truncate(steps, 0.5) == "Step 1: add 2 and 3."  # a step's end: at most 34 characters
    assert truncate(steps, 0.8) == "Step 1: add 2 and 3.\nStep 2: that is 5."  # at most 54
    assert truncate(steps, 1.0) == steps
    prose = "We add the two numbers first. Then we multiply them by four. Done, the answer is 20."
    assert truncate(prose, 0.5) == "We add the two numbers first."  # no line end: a sentence's (<= 42)
    assert truncate(prose, 0.2) == "We add the two"  # no sentence ends by 17 characters: a word's
    assert truncate("abcdefghij klmnop", 0.5) == "abcdefghi"  # no boundary before the cut: the cut


def test_length_band_and_truncation_select_as_specified():
    from limo_exp.selection.choose import choose
    from limo_exp.selection.traces import truncate, words

    short, mid, long_ = "one two three", " ".join(["w"] * 10), " ".join(["x."] * 50)
    pool = [rec(f"p{i}", str(i), text) for i, text in enumerate([short, mid, long_] * 4)]
    band, figures = choose(pool, config("data.n_samples=4", "quality.min_words=5", "quality.max_words=20"))
    assert sorted(e.solution for e in band) == [mid] * 4  # only the 10-word solutions are in the band
    with pytest.raises(ValueError, match="asked for 5 records of tier 'long', only 4 eligible"):
        choose(pool, config("data.n_samples=5", "quality.min_words=5", "quality.max_words=20"))
    whole, full = choose(pool, config("data.n_samples=8"))
    cut, figures = choose(pool, config("data.n_samples=8", "quality.truncate=0.5"))
    assert [e.id for e in cut] == [e.id for e in whole]  # the same questions, only shorter
    assert [e.solution for e in cut] == [truncate(e.solution, 0.5) for e in whole]
    assert all(len(c.solution) <= -(-len(w.solution) // 2) for c, w in zip(cut, whole))
    before = sum(words(e.solution) for e in whole)
    assert figures["train/solution_words"] == sum(words(e.solution) for e in cut) < before
    assert figures["train/words_cut"] == before - figures["train/solution_words"] > 0
    assert full["train/words_cut"] == 0 and full["train/questions"] == 8


# -- answers per question: N questions x k solutions ----------------------------------------------


def many(n_records: int, k: int, *, kind: str = "teacher:qwq:cot", **meta) -> list[Record]:
    """Records with k solutions each, quality scores 0..k-1 in reverse order (the last is best)."""
    return [
        Record.new(
            f"problem {i}",
            str(i),
            [Solution(f"sol {i}.{j} \\boxed{{{i}}}", kind, quality=float(j)) for j in range(k)],
            **meta,
        )
        for i in range(n_records)
    ]


def test_answers_per_question_is_in_the_run_key():
    assert len({FAST_KEY, key("data.answers_per_question=4"), key("data.answers_per_question=16")}) == 3
    with pytest.raises(ConfigError, match="data.answers_per_question=0: expected k >= 1"):
        config("data.answers_per_question=0")


def test_n_questions_with_k_solutions_each_the_best_k():
    from limo_exp.selection.choose import choose
    from limo_exp.selection.select import NotEnoughRecords

    pool = many(6, 5)
    opts = ["quality=teacher", "data.n_samples=3"]
    one, f1 = choose(pool, config(*opts))
    four, f4 = choose(pool, config(*opts, "data.answers_per_question=4"))
    assert len(one) == 3 and len(four) == 12  # N counts questions: 3 x 4 examples
    assert f4["train/questions"] == f1["train/questions"] == 3
    ids = [e.id for e in four]
    assert list(dict.fromkeys(ids)) == [e.id for e in one]  # the same questions, in the same order
    for e in one:  # each question's 4 best solutions (scores 4, 3, 2, 1), best first; the first is k=1's
        sols = [x.solution for x in four if x.id == e.id]
        n = e.problem.split()[-1]
        assert sols == [f"sol {n}.{j} \\boxed{{{n}}}" for j in (4, 3, 2, 1)] and sols[0] == e.solution
    few = Record.new("few", "1", [Solution("only \\boxed{1}", "teacher:qwq:cot", quality=9.0)])
    assert "few" in {
        e.problem for e in choose([*pool, few], config("quality=teacher", "data.n_samples=7"))[0]
    }
    four, _ = choose(
        [*pool, few], config("quality=teacher", "data.n_samples=6", "data.answers_per_question=4")
    )
    assert "few" not in {e.problem for e in four}  # one solution: not a question of k = 4
    with pytest.raises(NotEnoughRecords, match=r"only 6 eligible .*data.answers_per_question=4"):
        choose(pool, config("quality=teacher", "data.n_samples=7", "data.answers_per_question=4"))
