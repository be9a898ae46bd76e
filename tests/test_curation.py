"""Curation stages on planted cases and on the real pools against the real benchmarks; the cache."""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, EVAL_DIR, POOL_DIR, compose

from limo_exp.commands.curate import run_curate
from limo_exp.config import ConfigError, CurationConfig, EvalConfig, SyntheticConfig
from limo_exp.curation import curate, curate_cached, format_funnel, write_outputs
from limo_exp.curation.chain_score import chain_score, quantile_tiers
from limo_exp.curation.stages import difficulty_band, verify_answers
from limo_exp.data.pools import load_pool
from limo_exp.data.records import BenchItem, Record, Solution
from limo_exp.data.synthetic import make_pool

CONF = CONF_DIR
OFF = {
    "verify": {"enabled": False},
    "dedup": {"exact": False, "near": False},
    "decontam": {"enabled": False},
    "quality": {"enabled": False},
}


def cfg_with(**sections) -> CurationConfig:
    d = {k: dict(v) for k, v in OFF.items()}
    for k, v in sections.items():
        d[k] = v
    return CurationConfig.from_dict(d)


@pytest.fixture(scope="module")
def real_benchmarks(shared_data):
    from limo_exp.data.benchmarks import load_benchmark

    return {n: load_benchmark(n, EVAL_DIR) for n in ("aime24", "aime25", "amc23", "math500", "olympiadbench")}


def rec(problem: str, answer: str = "1", *texts: str, **meta) -> Record:
    return Record.new(problem, answer, [Solution(t, "long") for t in (texts or ("\\boxed{1}",))], **meta)


# -- dedup ------------------------------------------------------------------------------------


def test_planted_duplicates_removed_distinct_kept(shared_data):
    base = load_pool("math_train", data_dir=str(POOL_DIR), n=302)
    # MATH train pairs at the threshold (true 5-shingle Jaccard 0.80-0.82: #148/#281 "greatest product of
    # two integers whose sum is 1998 / 246", #150/#225 a red parabola figure) go either way with
    # MinHash noise; leave them out so the test pins only clear cases
    base = [r for i, r in enumerate(base) if i not in (225, 281)]
    exact = replace(base[10], problem="  " + base[10].problem.upper().replace(" ", "\n  "), id="x")
    k = next(i for i in range(20, 300) if len(base[i].problem.split()) > 40 and i not in (9, 101))
    words = base[k].problem.split()
    near = replace(base[k], problem=" ".join(words[:-1] + ["indeed", words[-1]]), id="y")  # one word inserted
    pool = base + [exact, near]
    out = curate(pool, cfg_with(dedup={"exact": True, "near": True}), {})
    assert [(s["stage"], s["in"], s["out"]) for s in out.funnel] == [
        ("load", 302, 302),
        ("dedup_exact", 302, 301),
        ("dedup_near", 301, 299),
    ]
    # MATH train's own near duplicate: #101 repeats #9's piecewise f(x) (Jaccard 0.88); the first is kept
    assert [r.id for r in out.records] == [r.id for i, r in enumerate(base) if i != 101]


def test_one_number_variants_are_not_duplicates():
    a = "What is the sum of the first 12 terms of the arithmetic sequence that starts at 6 and increases by 2?"
    b = a.replace("starts at 6", "starts at 18")
    out = curate([rec(a), rec(b)], cfg_with(dedup={"exact": True, "near": True}), {})
    assert len(out.records) == 2


# -- decontamination --------------------------------------------------------------------------


def test_decontam_real_aime_vs_benchmarks(real_benchmarks):
    pool = load_pool("aime_historical", data_dir=str(POOL_DIR))
    out = curate(pool, cfg_with(decontam={"enabled": True}), real_benchmarks)
    pairs = {(r["pool_id"], r["eval_task"], r["eval_id"]) for r in out.contamination}
    # verified by eye: AIME problems that MATH-500 reuses (formatting differs: "\," vs "\[", \dfrac vs \frac)
    assert ("d5490788acc898a8", "math500", "test/intermediate_algebra/1365.json") in pairs  # |x-p|+|x-15|+...
    assert ("26695e30267dff7d", "math500", "test/intermediate_algebra/582.json") in pairs  # x^10+(13x-1)^10=0
    assert ("418114bb1268d9c0", "math500", "test/intermediate_algebra/1063.json") in pairs  # F(z)=(z+i)/(z-i)
    assert len(pairs) == 8 and {r["eval_task"] for r in out.contamination} == {"math500"}
    assert out.funnel[-1] == {
        "stage": "decontam",
        "in": 975,
        "out": 967,
        "flagged": 8,
        "benchmarks": sorted(real_benchmarks),
        "benchmark_items": 1275,
    }
    row = out.contamination[0]
    assert {"pool_id", "pool_problem", "eval_task", "eval_id", "eval_problem", "method", "score"} <= set(row)
    # boilerplate ("where $m$ and $n$ are relatively prime positive integers") alone never flags
    raw = curate(
        pool,
        cfg_with(decontam={"enabled": True, "min_overlap": 0.0, "max_pool_df": 0, "near": False}),
        real_benchmarks,
    )
    assert len(raw.contamination) > 1000  # the open-r1 rule (any shared 8-gram) flags thousands of pairs


def test_decontam_real_math_train(real_benchmarks):
    pool = load_pool("math_train", data_dir=str(POOL_DIR))
    out = curate(pool, cfg_with(decontam={"enabled": True}), real_benchmarks)
    pairs = {(r["pool_id"], r["eval_task"], r["eval_id"]) for r in out.contamination}
    assert ("1b1b17b18a2aa152", "olympiadbench", "2890") in pairs  # ellipse tangent to both axes
    assert ("b1e3e01c6ed79ed3", "olympiadbench", "2644") in pairs  # sin^2 4° + sin^2 8° + ...
    assert ("6597649ce0e7f437", "math500", "test/number_theory/466.json") in pairs  # 1+...+10 mod 9
    assert 30 <= len(out.contamination) <= 60
    gsm = curate(
        load_pool("gsm8k", data_dir=str(POOL_DIR)), cfg_with(decontam={"enabled": True}), real_benchmarks
    )
    assert gsm.contamination == []  # grade-school word problems share nothing with the competition sets


def test_datasketch_engine_passes_the_same_pinned_cases(shared_data, real_benchmarks):
    """datasketch's MinHash + MinHashLSH (bench/minhash_datasketch.py), the maintained library the
    vectorised engine is measured against (bench_curation.py --compare), finds the same pinned
    near-duplicates and benchmark overlaps; the vectorised engine stays for its speed (docs/curation.md)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import minhash_datasketch

    with minhash_datasketch.use():
        test_planted_duplicates_removed_distinct_kept(shared_data)
        test_one_number_variants_are_not_duplicates()
        test_decontam_real_aime_vs_benchmarks(real_benchmarks)
        test_decontam_real_math_train(real_benchmarks)


def test_decontam_report_only_keeps_records():
    item = BenchItem(
        "toy", "q1", "Find the number of positive divisors of 2024 that are perfect squares.", "4"
    )
    pool = [
        rec("Find the number of positive divisors of 2024 that are perfect squares."),
        rec("What is 2+3?"),
    ]
    keep = curate(pool, cfg_with(decontam={"enabled": True, "drop": False}), {"toy": [item]})
    assert len(keep.records) == 2 and [r["eval_id"] for r in keep.contamination] == ["q1"]
    drop = curate(pool, cfg_with(decontam={"enabled": True}), {"toy": [item]})
    assert [r.problem for r in drop.records] == ["What is 2+3?"]


# -- verification, difficulty, quality ----------------------------------------------------------


def test_verify_keeps_matching_solutions_only():
    pool = [
        rec("p1", "1/2", "so \\boxed{\\frac{1}{2}}", "so \\boxed{0.6}"),
        rec("p2", "7", "\\boxed{8}"),
        rec("p3", "", "\\boxed{3}"),  # no gold answer: cannot be verified
    ]
    kept, extra = verify_answers(pool)
    assert [r.problem for r in kept] == ["p1"] and [s.text for s in kept[0].solutions] == [
        "so \\boxed{\\frac{1}{2}}"
    ]
    assert extra == {"solutions_in": 4, "solutions_out": 1}
    assert len(pool[0].solutions) == 2  # inputs are not mutated


def test_difficulty_band(tmp_path):
    pool = [rec(f"p{i}", level=i) for i in range(1, 6)] + [rec("no level")]
    c = CurationConfig.from_dict({"difficulty": {"enabled": True, "field": "level", "min": 4}}).difficulty
    assert [r.meta["level"] for r in difficulty_band(pool, c)] == [4, 5]
    rates = tmp_path / "rates.jsonl"
    rates.write_text("\n".join(json.dumps({"id": r.id, "pass_rate": i / 10}) for i, r in enumerate(pool)))
    c = CurationConfig.from_dict(
        {"difficulty": {"enabled": True, "pass_rates": str(rates), "max": 0.25}}
    ).difficulty
    assert [r.problem for r in difficulty_band(pool, c)] == ["p1", "p2", "p3"]


CHAINS = {
    "answer": "\\boxed{12}",
    "terse": "3 x 4 = 12, so \\boxed{12}.",
    "steps": "The box has 3 rows.\nEach row has 4 apples.\nSo there are 3 x 4 = 12 apples.\n"
    "Therefore the answer is \\boxed{12}." + " We count rows first, then apples per row." * 3,
    "verified": "Let me work through this step by step.\nThere are 3 rows of 4 apples.\nSo 3 x 4 = 12 apples.\n"
    "Wait, let me verify this another way. Counting by columns: 4 columns of 3 gives 12. "
    "That checks out, so the count is confirmed.\nThe answer is \\boxed{12}." + " Each step is exact." * 3,
    "explored": "Let me think. Perhaps I can count rows, or alternatively columns.\nThere are 3 rows of 4 apples.\n"
    "So 3 x 4 = 12.\nAlternatively, maybe add: 4 + 4 + 4 = 12.\nWait, let me verify: 12 / 3 = 4, "
    "which matches the row length. I should double-check the columns too: 3 + 3 + 3 + 3 = 12. "
    "Indeed both agree.\nThe answer is \\boxed{12}." + " Every approach gives the same total." * 6,
}


def test_quality_orders_hand_written_chains():
    scores = {k: chain_score(v) for k, v in CHAINS.items()}
    assert sorted(scores, key=scores.get) == ["answer", "terse", "steps", "verified", "explored"]
    assert all(0 <= s <= 1 for s in scores.values())


def test_quantile_tiers():
    assert quantile_tiers([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) == [
        "L1",
        "L1",
        "L2",
        "L2",
        "L3",
        "L3",
        "L4",
        "L4",
        "L5",
        "L5",
    ]
    assert set(quantile_tiers([0.5] * 7)) == {"L1"}  # ties share a tier


def test_curate_synthetic_funnel_and_tiers():
    from limo_exp.data.benchmarks import load_benchmark

    out = curate(make_pool(300), CurationConfig(), {"synthetic": load_benchmark("synthetic")})
    stages = [s["stage"] for s in out.funnel]
    assert stages == ["load", "verify", "dedup_exact", "dedup_near", "decontam", "quality"]
    assert all(a["out"] == b["in"] for a, b in zip(out.funnel, out.funnel[1:]))
    by_kind = {
        k: {s.tier for r in out.records for s in r.solutions if s.kind == k} for k in ("answer_only", "long")
    }
    assert by_kind["answer_only"] == {"L1"} and by_kind["long"] <= {"L4", "L5"}


# -- config, outputs, entry point ---------------------------------------------------------------


def test_curation_yaml_is_the_dataclass():
    d = yaml.safe_load((CONF / "curation" / "default.yaml").read_text())
    assert CurationConfig.from_dict(d) == CurationConfig()  # every key in the file is read, defaults agree
    with pytest.raises(
        ConfigError, match=r"unknown config key curation.dedup.treshold; valid keys of curation.dedup: "
    ):
        CurationConfig.from_dict({"dedup": {"treshold": 0.5}})


def test_run_curate_writes_outputs(tmp_path, capsys):
    cfg = compose(
        [
            "pool=synthetic",
            "pool.n=200",
            "eval.tasks=[limo_synthetic]",
            f"+paths.output_dir={tmp_path / 'out'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ]
    )
    res = run_curate(cfg)
    shown = capsys.readouterr().out
    assert "stage" in shown and "dedup_near" in shown and "decontam" in shown
    assert res["records_in"] == 200 and res["records_out"] == len(
        Path(res["curated_pool_path"]).read_text().splitlines()
    )
    funnel = json.loads(Path(res["funnel_path"]).read_text())["funnel"]
    assert funnel[0] == {"stage": "load", "in": 200, "out": 200} and res["from_cache"] is False
    assert run_curate(cfg)["from_cache"] is True


def test_write_outputs_and_format(tmp_path):
    out = curate(make_pool(20), CurationConfig.from_dict(OFF), {})
    paths = write_outputs(out, tmp_path)
    assert [p.name for p in paths] == ["curated_pool.jsonl", "funnel.json", "contamination.jsonl"]
    assert Record.from_dict(json.loads(paths[0].read_text().splitlines()[0])) == out.records[0]
    assert format_funnel(out.funnel).splitlines()[2].split() == ["load", "20", "20", "0"]


# -- cache ------------------------------------------------------------------------------------


def test_cache_second_call_reads_back(tmp_path, monkeypatch):
    pool, cfg = make_pool(100), cfg_with(dedup={"exact": True, "near": True}, quality={"enabled": True})
    first = curate_cached(pool, cfg, {}, tmp_path)
    from limo_exp.curation import cache

    monkeypatch.setattr(cache, "curate", lambda *a: pytest.fail("recomputed"))
    second = curate_cached(pool, cfg, {}, tmp_path)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.records == first.records and second.funnel == first.funnel
    assert second.fingerprint == first.fingerprint
    other = cfg_with(dedup={"exact": True, "near": False})  # another config is another entry
    monkeypatch.undo()
    assert curate_cached(pool, other, {}, tmp_path).from_cache is False
    assert not list(tmp_path.glob("*.tmp"))


def _cached_worker(cache_dir, barrier, queue):
    pool = make_pool(1500)
    cfg = cfg_with(dedup={"exact": True, "near": True}, quality={"enabled": True})
    barrier.wait()
    out = curate_cached(pool, cfg, {}, cache_dir)
    queue.put((out.from_cache, out.fingerprint))


def test_parallel_callers_curate_once(tmp_path):
    ctx = mp.get_context("fork")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_cached_worker, args=(str(tmp_path), barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(r[0] for r in results) == [False, True, True, True]  # one curated, three read
    assert len({r[1] for r in results}) == 1
    assert len(list(tmp_path.glob("curated-*.json"))) == 1


def test_benchmarks_for_expands_groups_and_fails_clearly(shared_data, tmp_path):
    from limo_exp.evaluation.registry import benchmarks_for

    five = EvalConfig(tasks=["limo_synthetic"], synthetic=SyntheticConfig(n=5))
    assert [len(v) for v in benchmarks_for(five).values()] == [5]
    # the group on a folder without GPQA: the five present benchmarks, GPQA skipped (and warned about)
    assert sorted(benchmarks_for(EvalConfig(tasks=["limo_paper"], data_dir=str(EVAL_DIR)))) == [
        "aime24",
        "aime25",
        "amc23",
        "math500",
        "olympiadbench",
    ]
    with pytest.raises(FileNotFoundError, match="limo_gpqa_diamond"):  # asked for by name: an error
        benchmarks_for(EvalConfig(tasks=["limo_gpqa_diamond"], data_dir=str(EVAL_DIR)))


def test_benchmark_fingerprint_sees_gold_answers():
    from dataclasses import replace

    from limo_exp.data.records import BenchItem
    from limo_exp.evaluation.registry import benchmarks_fingerprint

    item = BenchItem(task="aime24", id="1", problem="Find x.", answer="204", answers=["204"])
    fixed = replace(item, answer="240", answers=["240"])
    assert benchmarks_fingerprint({"aime24": [item]}) != benchmarks_fingerprint({"aime24": [fixed]})
    assert benchmarks_fingerprint({"aime24": [item]}) == benchmarks_fingerprint({"aime24": [replace(item)]})
