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


def test_min_answers_draws_every_k_from_the_same_questions():
    """A distilled pool keeps only right answers, so easy questions have more: alone, k = 4 draws
    among the questions with 4 or more and k = 1 among all, other questions (a confound of the
    k sweep). ``data.min_answers=4`` draws both from the same ones, in the same order."""
    from limo_exp.selection.choose import choose
    from limo_exp.selection.select import NotEnoughRecords

    pool = [  # 12 questions with 1, 2, 3, 4, 5, 1, ... solutions
        Record.new(f"problem {i}", str(i), many(1, 1 + i % 5)[0].solutions) for i in range(12)
    ]
    counts = {r.id: len(r.solutions) for r in pool}
    name = {r.id: r.problem.split()[-1] for r in pool}
    opts = ["quality=teacher", "data.n_samples=3"]
    one = [e.id for e in choose(pool, config(*opts))[0]]
    four = list(dict.fromkeys(e.id for e in choose(pool, config(*opts, "data.answers_per_question=4"))[0]))
    # pinned, seed 0: k = 1 draws question 7 (3 solutions); k = 4 skips it and draws 4 (5 solutions)
    assert [name[i] for i in one] == ["7", "9", "3"] and [name[i] for i in four] == ["9", "3", "4"]
    assert one != four  # without min_answers: other questions at each k
    held = ["data.min_answers=4"]
    one_h = [e.id for e in choose(pool, config(*opts, *held))[0]]
    four_h = choose(pool, config(*opts, *held, "data.answers_per_question=4"))[0]
    assert one_h == list(dict.fromkeys(e.id for e in four_h)) == four  # the same questions, same order
    assert len(four_h) == 12 and all(counts[i] >= 4 for i in one_h)
    with pytest.raises(ConfigError, match="data.min_answers=2: below data.answers_per_question=4"):
        config(*held[:0], "data.min_answers=2", "data.answers_per_question=4")
    with pytest.raises(NotEnoughRecords, match=r"only 4 eligible .*data.min_answers=4: 4 solutions each"):
        choose(pool, config("quality=teacher", "data.n_samples=5", *held))
    assert key("data.min_answers=null") == FAST_KEY != key(*held)


# -- question mixtures: pool=mix ------------------------------------------------------------------

MIX = {
    "math": {"pool": "math_train", "weight": 3, "n": 60},
    "gsm8k": {"pool": "gsm8k", "weight": 1, "n": 40},
    "aime": {"pool": "aime_historical", "weight": 0},
}


def test_mixture_weights_are_in_the_run_key():
    base = key("pool=mix")
    assert base != FAST_KEY
    assert (
        len(
            {
                base,
                key("pool=mix", "pool.members.gsm8k.weight=3"),
                key("pool=mix", "pool.members.aime.weight=1"),
            }
        )
        == 3
    )
    with pytest.raises(ConfigError, match="pool.members is for pool=mix, not pool=synthetic"):
        from limo_exp.data.pools import load_pool

        load_pool("synthetic", members=MIX)


def test_mix_reads_the_members_with_a_share_each_marked(shared_data):
    from limo_exp.data.pools import load_pool, pool_origin

    pool = load_pool("mix", members=MIX, data_dir=str(shared_data / "pools"))
    assert [r.meta["member"] for r in pool] == ["math"] * 60 + ["gsm8k"] * 40  # aime at weight 0: not read
    assert {r.meta["source"] for r in pool} == {"math_train", "gsm8k"}
    origin = pool_origin(config("pool=mix", f"pool.data_dir={shared_data / 'pools'}").pool)
    assert origin["kind"] == "mix" and sorted(origin["members"]) == ["gsm8k", "math"]
    assert origin["members"]["gsm8k"]["path"].endswith("gsm8k_train.jsonl")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a": {"pool": "gsm8k"}}, "pool.members.a: set one of weight or count, got neither"),
        ({"a": {"pool": "gsm8k", "weight": 1, "count": 2}}, "set one of weight or count, got"),
        ({"a": {"pool": "gsm8k", "weight": -1}}, r"pool.members.a.weight=-1: expected a number >= 0"),
        ({"a": {"pool": "mix", "weight": 1}}, "pool.members.a.pool must name a pool source"),
        (
            {"a": {"pool": "gsm8k", "weight": 1, "data_dir": "/x"}},
            "unknown config key pool.members.a.data_dir",
        ),
        ({"a": {"pool": "gsm8k", "weight": 1}, "b": {"pool": "gsm8k", "count": 1}}, "not both"),
        ({"a": {"pool": "gsm8k", "weight": 0}}, "nothing to draw from"),
    ],
)
def test_bad_members_name_the_key(members, message):
    from limo_exp.data.mix import check_members

    with pytest.raises(ConfigError, match=message):
        check_members(members)


def test_curation_deduplicates_and_decontaminates_across_members(shared_data):
    from limo_exp.data.pools import load_pool
    from limo_exp.data.records import BenchItem

    members = {
        "gsm8k": {"pool": "gsm8k", "weight": 1, "n": 30},
        "again": {"pool": "gsm8k", "weight": 1, "n": 10},
    }
    pool = load_pool("mix", members=members, data_dir=str(shared_data / "pools"))
    leaked = pool[5].problem  # a benchmark item that one member holds
    cfg = CurationConfig.from_dict({"verify": {"enabled": False}, "quality": {"enabled": False}})
    curated = curate(pool, cfg, {"bench": [BenchItem("bench", "0", leaked, "1")]})
    funnel = {s["stage"]: (s["in"], s["out"]) for s in curated.funnel}
    assert funnel["dedup_exact"] == (40, 30)  # the second member's 10 are the first member's first 10
    assert funnel["decontam"] == (30, 29)
    assert {r.meta["member"] for r in curated.records} == {"gsm8k"} and leaked not in {
        r.problem for r in curated.records
    }


def mixed(n_math: int, n_gsm: int) -> list[Record]:
    return [rec(f"math {i}", str(i), "x", kind="human", member="math") for i in range(n_math)] + [
        rec(f"gsm {i}", str(i), "y", kind="human", member="gsm8k") for i in range(n_gsm)
    ]


def test_selection_draws_each_members_share_nested():
    from limo_exp.selection.choose import choose

    pool = mixed(30, 30)
    mix = ["pool=mix", "quality=human", "pool.members.math.weight=3", "pool.members.gsm8k.weight=1"]
    eight, figures = choose(pool, config(*mix, "data.n_samples=8"))
    members = [e.problem.split()[0] for e in eight]
    assert members == ["math", "math", "gsm", "math", "math", "math", "gsm", "math"]  # 6 : 2, interleaved
    assert figures["train/share/math"] == 0.75 and figures["train/share/gsm8k"] == 0.25
    assert figures["curation/member/math"] == 30.0 and "train/share/aime" not in figures
    four, _ = choose(pool, config(*mix, "data.n_samples=4"))
    assert [e.id for e in four] == [e.id for e in eight][:4]  # nested: N=4 inside N=8
    random = [e.id for e in choose(pool, config("quality=human", "data.n_samples=30"))[0]]
    assert [e.id for e in eight if e.problem.startswith("math")] == [
        i for i in random if i in {r.id for r in pool[:30]}
    ][:6]  # within a member: the strategy's order


def test_counts_are_exact_and_add_up_to_n():
    from limo_exp.selection.choose import choose
    from limo_exp.selection.select import NotEnoughRecords

    counts = ["pool=mix", "quality=human", "~pool.members.math.weight", "~pool.members.gsm8k.weight"]
    counts += ["+pool.members.math.count=5", "+pool.members.gsm8k.count=3", "pool.members.aime.weight=null"]
    counts += ["+pool.members.aime.count=0"]
    got, figures = choose(mixed(30, 30), config(*counts, "data.n_samples=8"))
    assert sorted(e.problem.split()[0] for e in got) == ["gsm"] * 3 + ["math"] * 5
    assert (figures["train/share/math"], figures["train/share/gsm8k"]) == (5 / 8, 3 / 8)
    with pytest.raises(ConfigError, match=r"pool.members counts add up to 8 .* data.n_samples=9"):
        choose(mixed(30, 30), config(*counts, "data.n_samples=9"))
    with pytest.raises(NotEnoughRecords, match="pool.members.gsm8k: its share of N=8 needs more than the 2"):
        choose(mixed(30, 2), config(*counts, "data.n_samples=8"))


# -- the teacher of a distilled pool ---------------------------------------------------------------


def distilled(tmp_path):
    """One pool.jsonl holding two teachers' solutions, each record with its writer's cost."""
    import json

    rows = []
    for i in range(4):
        t = "qwq" if i % 2 else "r1"
        sols = [Solution(f"{t} says \\boxed{{{i}}}", f"teacher:{t}:cot"), Solution(f"human {i}", "human")]
        r = Record.new(f"q {i}", str(i), sols, teacher=t, teacher_tokens=100 * (i + 1), teacher_seconds=1.0)
        rows.append(json.dumps(r.to_dict()))
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_teacher_is_in_the_run_key_and_keeps_its_own_solutions_and_cost(tmp_path):
    from limo_exp.data.pools import load_pool
    from limo_exp.tracking.protocol import NullTracker
    from limo_exp.tracking.run_log import log_teacher_cost

    path = distilled(tmp_path)
    both = key("pool=distilled", f"pool.file={path}")
    assert len({both, key("pool=distilled", f"pool.file={path}", "pool.teacher=qwq")}) == 2
    qwq = load_pool("distilled", file=str(path), teacher="qwq")
    assert [[s.kind for s in r.solutions] for r in qwq] == [["human"], ["teacher:qwq:cot", "human"]] * 2
    assert [r.meta.get("teacher_tokens") for r in qwq] == [None, 200, None, 400]

    class Logged(NullTracker):
        def log_metrics(self, m, step=None):
            self.m = m

    t = Logged()
    log_teacher_cost(t, qwq)
    assert t.m["cost/teacher_tokens"] == 600.0  # qwq's records only (r1's wrote 100 + 300)
    with pytest.raises(
        ConfigError, match=r"pool.teacher=o1: the pool has solutions of teachers \['qwq', 'r1'\]"
    ):
        load_pool("distilled", file=str(path), teacher="o1")
    with pytest.raises(ConfigError, match="pool.teacher is for pool=distilled, not pool=synthetic"):
        load_pool("synthetic", teacher="qwq")


def test_run_names_lead_with_what_a_sweep_of_the_new_axes_varies():
    from limo_exp.tracking.run_log import run_name

    axes = {"data.answers_per_question": "4", "data.n_samples": "8"}
    assert run_name("teacher", "random", 8, 0, axes) == "N=8 · answers_per_question=4 · s0"
    axes = {"pool.members.gsm8k.weight": "1", "pool.members.aime.weight": "0"}
    assert run_name("human", "random", 8, 0, axes) == "N=8 · gsm8k.weight=1 · aime.weight=0 · s0"
    axes = {"curation.verify.mode": "inverted", "quality.truncate": "0.5"}
    assert run_name("long", "random", 8, 1, axes) == "N=8 · mode=inverted · truncate=0.5 · s1"


# -- the sweep files end to end on the tiny model (make test-slow) ------------------------------


def launch(sweep: str, tmp_path, cache_dir, *overrides: str) -> dict:
    """``limo-exp run --multirun sweep=<sweep> debug=fast ...`` in its own process group (killed
    whole on a timeout); the study's runs by name."""
    import os
    import signal
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    cmd = [sys.executable, "-m", "limo_exp", "run", "--multirun", f"sweep={sweep}", "debug=fast"]
    cmd += [f"paths.output_root={tmp_path}", f"paths.cache_dir={cache_dir}", f"study=t_{sweep}", *overrides]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    exp = client.get_experiment_by_name(f"t_{sweep}").experiment_id
    runs = [r for r in client.search_runs([exp]) if "limo.run_key" in r.data.tags]
    assert {r.info.status for r in runs} == {"FINISHED"}
    return {r.info.run_name: r.data for r in runs}


def jsonl(path, rows) -> str:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


STEPS = "Let x be {a} plus {b}.\nThen x is {c}.\nSo we double it to get {d}.\nThe answer is \\boxed{{{d}}}."


@pytest.mark.slow  # two tiny runs in a subprocess, ~1-3 min on the shared CPU
def test_trace_length_sweep_end_to_end(tmp_path, cache_dir):
    rows = [
        {"question": f"What is twice {a} plus {a + 1}?", "answer": str(2 * (2 * a + 1)),
         "solution": STEPS.format(a=a, b=a + 1, c=2 * a + 1, d=2 * (2 * a + 1))}
        for a in range(12)
    ]  # fmt: skip
    file = jsonl(tmp_path / "limo.jsonl", rows)
    runs = launch(
        "trace_length",
        tmp_path,
        cache_dir,
        f"pool.file={file}",
        "quality.truncate=null,0.5",
        "data.n_samples=4",
    )
    assert sorted(runs) == ["N=4 · truncate=0.5 · s0", "N=4 · truncate=null · s0"]
    cut, whole = runs["N=4 · truncate=0.5 · s0"].metrics, runs["N=4 · truncate=null · s0"].metrics
    assert whole["train/words_cut"] == 0 and cut["train/words_cut"] > 0
    assert cut["train/solution_words"] + cut["train/words_cut"] == whole["train/solution_words"]
    assert cut["cost/train_tokens"] < whole["cost/train_tokens"]  # the tokens saved, in the cost


@pytest.mark.slow
def test_structure_sweep_end_to_end(tmp_path, cache_dir):
    rows = [
        {"problem": f"What is {a} plus {a}?", "answer": str(2 * a),
         "generations": [f"{a} and {a} make \\boxed{{{2 * a}}}", f"{a} and {a} make \\boxed{{{2 * a + 1}}}"],
         "correctness_math_verify": [True, False], "is_reasoning_complete": [True, True],
         "source": "t", "problem_type": "t", "question_type": "t"}
        for a in range(1, 13)
    ]  # fmt: skip
    file = jsonl(tmp_path / "openr1.jsonl", rows)
    runs = launch(
        "structure",
        tmp_path,
        cache_dir,
        f"pool.file={file}",
        "curation.verify.mode=kept,inverted",
        "data.n_samples=4",
    )
    assert sorted(runs) == ["N=4 · mode=inverted · s0", "N=4 · mode=kept · s0"]
    assert runs["N=4 · mode=kept · s0"].metrics["curation/verify_out"] == 12
    assert runs["N=4 · mode=inverted · s0"].metrics["curation/verify_inverted_out"] == 12


@pytest.mark.slow
def test_answers_per_question_sweep_end_to_end(tmp_path, cache_dir):
    import json

    recs = many(10, 4, kind="teacher:tiny:cot")
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in recs))
    runs = launch(
        "answers_per_question",
        tmp_path,
        cache_dir,
        f"pool.file={tmp_path / 'pool.jsonl'}",
        "data.answers_per_question=1,4",
        "data.min_answers=4",  # the sweep's 16: this pool has 4 solutions a question
        "data.n_samples=4",
        "curation=none",
        "train.max_steps=null",
        "train.epochs=1",  # one epoch: the steps, so the tokens, follow the examples
    )
    one, four = (
        runs["N=4 · answers_per_question=1 · s0"].metrics,
        runs["N=4 · answers_per_question=4 · s0"].metrics,
    )
    assert (one["train/questions"], one["train/n_examples"]) == (4, 4)
    assert (four["train/questions"], four["train/n_examples"]) == (4, 16)
    assert four["cost/train_tokens"] > 3 * one["cost/train_tokens"]


@pytest.mark.slow
def test_mixtures_sweep_end_to_end(tmp_path, cache_dir, shared_data):
    runs = launch(
        "mixtures", tmp_path, cache_dir, f"pool.data_dir={shared_data / 'pools'}", "+pool.members.math.n=80",
        "+pool.members.gsm8k.n=40", "pool.members.aime.weight=0", "quality.max_words=60",
    )  # fmt: skip
    assert sorted(runs) == [
        "N=8 · gsm8k.weight=0 · aime.weight=0 · s0",
        "N=8 · gsm8k.weight=1 · aime.weight=0 · s0",
    ]
    alone = runs["N=8 · gsm8k.weight=0 · aime.weight=0 · s0"].metrics
    both = runs["N=8 · gsm8k.weight=1 · aime.weight=0 · s0"].metrics
    assert alone["train/share/math"] == 1.0 and "train/share/gsm8k" not in alone
    assert both["train/share/math"] == both["train/share/gsm8k"] == 0.5
