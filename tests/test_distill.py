"""limo-exp distill: teacher solutions graded by the evaluation grader, cached per sample, kept
correct only, selectable by tier; pass rates that rank ``selection=difficult``; early errors."""

from __future__ import annotations

import json

import pytest
from conftest import compose

from limo_exp.config import DistillConfig, SelectionConfig
from limo_exp.data.records import Record, Solution
from limo_exp.distill import distill, prompt_text
from limo_exp.evaluation.generation.engines import Out
from limo_exp.evaluation.store import NoStore, ResponseStore
from limo_exp.selection import NotEnoughRecords, select
from limo_exp.typed import ConfigError

PROBLEMS = {  # problem -> (gold answer, what the fake teacher writes for samples 0, 1, 2, ...)
    "Ann has 3 apples and gets 4 more. How many?": ("7", ["3+4 = 7, so \\boxed{7}"] * 3),
    "Bob has 5 pens; he buys 7. How many?": ("12", ["\\boxed{12}", "\\boxed{13}", "5 + 7: \\boxed{12}"]),
    "Cat writes a poem. How long is it?": ("", ["\\boxed{1}"] * 3),  # no gold answer: not distilled
    "Dan has 2 cups and breaks none. How many?": ("2", ["\\boxed{2} and then"] * 3),  # cut at the budget
}


def _records() -> list[Record]:
    return [Record.new(p, a, [Solution(f"{p} -> {a}", "short")]) for p, (a, _) in PROBLEMS.items()]


class FakeTeacher:
    """Answers by the problem in the prompt: the n-th request for a prompt is its n-th sample."""

    batch_size = 2

    def __init__(self, first_sample: int = 0):  # a store holding samples 0..m-1: the next one asked is m
        self.requests, self.seen, self.first = [], {}, first_sample

    def generate(self, reqs):
        outs = []
        for g in reqs:
            self.requests.append(g)
            problem = next(p for p in PROBLEMS if p in g.prompt)
            i = self.seen[g.prompt] = self.seen.get(g.prompt, self.first - 1) + 1
            text = PROBLEMS[problem][1][i]
            outs.append(Out(text, 10 + i, "length" if problem.startswith("Dan") else "stop"))
        return outs


@pytest.fixture(scope="module")
def tok(tiny_model):
    from limo_exp.training.models import load_tokenizer

    return load_tokenizer(str(tiny_model))


def _distill(tok, store, teacher, **kw):
    cfg = DistillConfig(**({"k": 2} | kw))
    return distill(
        _records(), cfg, teacher="fake", tokenizer=tok, store=store, engine_factory=lambda: teacher
    )


def test_funnel_pass_rates_kinds_and_cost(tok):
    teacher = FakeTeacher()
    res = _distill(tok, NoStore("fp"), teacher)
    assert res.funnel == {
        "problems": 4,
        "no_gold_answer": 1,
        "generated": 6,
        "truncated": 2,
        "graded_correct": 3,  # Ann twice, Bob once; Dan's boxed 2 ran out of tokens: no answer
        "kept": 2,  # Ann's two samples are one text
        "problems_solved": 2,
    }
    ann, bob, cat, dan = res.records
    assert res.pass_rates == {ann.id: 1.0, bob.id: 0.5, dan.id: 0.0}
    assert [(s.kind, s.text) for s in ann.solutions[1:]] == [("teacher:fake:cot", "3+4 = 7, so \\boxed{7}")]
    assert [s.text for s in bob.solutions[1:]] == ["\\boxed{12}"]
    assert cat == _records()[2] and len(dan.solutions) == 1  # untouched; nothing kept
    assert (ann.meta["teacher_tokens"], bob.meta["teacher_tokens"], res.tokens) == (21, 21, 63)
    assert [r["status"] for r in res.samples if r["id"] == dan.id] == ["truncated", "truncated"]
    assert len(teacher.requests) == 6 and all(g.temperature == 0.7 for g in teacher.requests)
    assert len({g.seed for g in teacher.requests}) == 6  # each sample its own seed (vLLM draws from it)


def test_a_rerun_generates_nothing_and_a_larger_k_only_the_new_samples(tok, tmp_path):
    first = _distill(tok, ResponseStore(tmp_path, "fp"), FakeTeacher())
    assert first.generated == 6

    def no_model():
        raise AssertionError("the teacher was loaded although every sample is stored")

    again = distill(
        _records(), DistillConfig(k=2), teacher="fake", tokenizer=tok,
        store=ResponseStore(tmp_path, "fp"), engine_factory=no_model,
    )  # fmt: skip
    assert again.generated == 0 and again.funnel == first.funnel and again.records == first.records
    more = FakeTeacher(first_sample=2)
    wider = _distill(tok, ResponseStore(tmp_path, "fp"), more, k=3)
    assert wider.generated == 3 and len(more.requests) == 3  # sample 2 of each problem with an answer
    bob = wider.records[1]
    assert [s.text for s in bob.solutions[1:]] == [
        "\\boxed{12}",
        "5 + 7: \\boxed{12}",
    ]  # the new one is distinct
    capped = _distill(tok, ResponseStore(tmp_path, "fp"), FakeTeacher(), k=3, max_per_problem=1)
    assert capped.funnel["kept"] == 2 and capped.generated == 0


def test_teacher_solutions_are_selectable_by_tier_and_pass_rates_rank_difficult(tok, tmp_path):
    from limo_exp.distill import write_outputs
    from limo_exp.selection.strategies import load_rates

    res = _distill(tok, NoStore("fp"), FakeTeacher())
    ann, bob, _, dan = res.records
    assert [e.id for e in select(res.records, 2, "teacher", seed=0)] == [ann.id, bob.id]  # seed 0's order
    assert [e.tier for e in select(res.records, 1, "teacher:fake", seed=0)] == ["teacher:fake:cot"]
    with pytest.raises(NotEnoughRecords, match="only 2 eligible"):
        select(res.records, 3, "teacher", seed=0)
    with pytest.raises(NotEnoughRecords, match="teacher:fake:cot"):
        select(res.records, 1, "teacher:other", seed=0)  # the message lists the kinds the pool has

    files = write_outputs(res, tmp_path, {"teacher": "fake"})
    assert [f.name for f in files] == ["pool.jsonl", "pass_rates.jsonl", "samples.jsonl", "distill.json"]
    rates = str(tmp_path / "pass_rates.jsonl")
    assert load_rates(rates) == res.pass_rates
    hardest = select(
        res.records, 3, "short", seed=0, options=SelectionConfig(strategy="difficult", pass_rates=rates)
    )
    assert [e.id for e in hardest] == [dan.id, bob.id, ann.id]  # pass rate 0, 0.5, 1; Cat has none: dropped
    summary = json.loads((tmp_path / "distill.json").read_text())
    assert summary["funnel"]["kept"] == 2 and summary["teacher_tokens"] == 63

    from limo_exp.data.pools import load_pool

    assert load_pool("distilled", file=str(tmp_path / "pool.jsonl")) == res.records  # read back as written


def test_rationalize_prompt_puts_problem_and_answer_in_once(tok):
    rec = Record.new("What is {answer} + 1 when x = 2?", "3", [])
    text = prompt_text(rec, DistillConfig(mode="rationalize", k=1, temperature=0), tok)
    assert "What is {answer} + 1 when x = 2?" in text  # a placeholder inside the problem stays as it is
    assert "The correct final answer is 3." in text
    cot = prompt_text(rec, DistillConfig(k=1), tok)
    assert "Please reason step by step" in cot and "final answer is 3" not in cot


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"k": 0}, r"distill.k must be >= 1, got 0"),
        ({"k": 4, "temperature": 0.0}, r"distill.k=4 with distill.temperature=0.0"),
        (
            {"mode": "rationalize", "rationalize_template": "Explain {problem}."},
            r"lacks the placeholder\(s\) \{answer\}",
        ),
        ({"mode": "socratic"}, r"distill.mode"),
        ({"max_per_problem": 0}, r"distill.max_per_problem must be >= 1"),
    ],
)
def test_bad_settings_fail_in_the_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        DistillConfig(**kw)


def _cfg(tmp_path, cache_dir, *extra):
    return compose(
        [
            "model=tiny_random",
            "pool=arithmetic",
            "pool.n=4",
            "distill.k=2",
            "distill.max_gen_toks=8",
            f"paths.output_root={tmp_path}",
            f"paths.cache_dir={cache_dir}",
            "study=distill",
            *extra,
        ]
    )


def test_distill_command_on_the_tiny_model_end_to_end(tmp_path, cache_dir):
    """The tiny model as teacher: graded (nothing survives: the funnel says so), logged, cached;
    a run trained on the distilled pool carries the teacher's cost."""
    from mlflow.tracking import MlflowClient

    from limo_exp.commands.distill import run_distill
    from limo_exp.commands.run import run

    out = run_distill(_cfg(tmp_path, cache_dir))
    assert out["funnel"]["generated"] == 8 and out["generated"] == 8 and out["funnel"]["kept"] == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    r = client.get_run(out["run_id"])
    assert r.data.tags["limo.kind"] == "distill" and r.data.metrics["distill/generated"] == 8
    tokens = r.data.metrics["cost/teacher_tokens"]
    assert tokens == 8 * 8  # every sample ran to max_gen_toks
    assert run_distill(_cfg(tmp_path, cache_dir))["skipped"]  # the same key: found FINISHED
    assert run_distill(_cfg(tmp_path, cache_dir, "force=true"))["generated"] == 0  # all from the store

    pool_file = f"{out['output']}/pool.jsonl"
    trained = run(
        _cfg(
            tmp_path,
            cache_dir,
            "debug=fast",
            "pool=distilled",
            f"pool.file={pool_file}",
            "quality=short",
            "data.n_samples=2",
        )
    )
    assert client.get_run(trained["run_id"]).data.metrics["cost/teacher_tokens"] == tokens


def test_bad_inputs_fail_before_any_generation(tmp_path, cache_dir):
    from limo_exp.commands.distill import run_distill

    with pytest.raises(SystemExit, match=r"teacher model=local_path \(.*nowhere\) cannot be loaded"):
        run_distill(_cfg(tmp_path, cache_dir, "model=local_path", f"model.path={tmp_path / 'nowhere'}"))
    no_gold = tmp_path / "no_gold.jsonl"
    no_gold.write_text(json.dumps(Record.new("Why?", "", []).to_dict()) + "\n")
    with pytest.raises(ConfigError, match="no record of pool=distilled has a gold answer"):
        run_distill(_cfg(tmp_path, cache_dir, "pool=distilled", f"pool.file={no_gold}"))
    assert not (tmp_path / "distill").exists()


class StreamingTeacher(FakeTeacher):
    """Fed as vLLM: every request in one call, responses handed back one at a time as they finish;
    ``die_after`` responses, it dies (a crash mid-call)."""

    requests_per_call = None

    def __init__(self, die_after: int | None = None):
        super().__init__()
        self.calls, self.die_after = [], die_after

    def stream(self, reqs):
        self.calls.append(len(reqs))
        for i, out in enumerate(self.generate(reqs)):
            if i == self.die_after:
                raise RuntimeError("the teacher died")
            yield [(i, out)]


def test_a_streaming_teacher_gets_every_request_in_one_call_and_each_is_stored_as_it_ends(tok, tmp_path):
    teacher = StreamingTeacher()
    assert _distill(tok, ResponseStore(tmp_path / "a", "fp"), teacher, k=3).generated == 9
    assert teacher.calls == [9]  # FakeTeacher's batch of 2 would have made chunks of 16: one call too
    dying = StreamingTeacher(die_after=4)
    with pytest.raises(RuntimeError, match="the teacher died"):
        _distill(tok, ResponseStore(tmp_path / "b", "fp"), dying, k=3)
    assert len(ResponseStore(tmp_path / "b", "fp").records) == 4  # what finished before the crash is kept
