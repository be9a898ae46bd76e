"""How the evaluation feeds its engines (issue 31, item 5): an engine that wants all of a task's
requests (vLLM: ``requests_per_call = None``) gets them in one call, responses are stored as they
finish (a crash loses only those in flight), tokens/s per task stays the tokens over the time;
an engine without the attribute (hf) keeps 4 x its batch a call. Stand-in engines, no model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from standin_engines import Batched, Streaming

from limo_exp.evaluation.store import ResponseStore
from limo_exp.evaluation.stored_lm import StoredLM


def requests(task: str, n: int, lengths=(5, 1, 3, 2)) -> list:
    return [
        SimpleNamespace(
            args=(f"{task} question {i}", {"max_gen_toks": lengths[i % len(lengths)], "until": []}),
            task_name=task,
            doc_id=i,
        )
        for i in range(n)
    ]


def lm_of(engine, tmp_path) -> StoredLM:
    return StoredLM("m", None, ResponseStore(tmp_path, "fp"), lambda: engine)


def stored_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "fp.jsonl").read_text().splitlines()]


def test_an_engine_fed_as_vllm_gets_all_of_a_tasks_requests_in_one_call(tmp_path):
    engine = Streaming(group=3)
    lm = lm_of(engine, tmp_path)
    out = lm.generate_until(requests("aime", 80) + requests("math", 12))
    assert engine.calls == [80, 12]  # was [16, 16, 16, 16, 16, 12] (chunks of 4 x its batch of 4)
    asked = [f"{t} question {i}" for t, n in (("aime", 80), ("math", 12)) for i in range(n)]
    assert [o.split("|")[0] for o in out] == asked  # in the order asked, whatever the finishing order


def test_an_engine_without_the_attribute_keeps_four_times_its_batch_a_call(tmp_path):
    engine = Batched(batch_size=4)
    lm_of(engine, tmp_path).generate_until(requests("aime", 40))
    assert engine.calls == [16, 16, 8]


def test_responses_are_stored_as_they_finish_in_finish_order(tmp_path):
    lm = lm_of(Streaming(group=2), tmp_path)
    lm.generate_until(requests("aime", 8))
    lines = stored_lines(tmp_path)
    assert [line["n_tokens"] for line in lines] == [1, 1, 2, 2, 3, 3, 5, 5]  # shortest first, as they ended
    assert {line["decoding"] for line in lines} == {"standin/streaming"}


def test_a_crash_loses_only_the_responses_in_flight(tmp_path):
    lm = lm_of(Streaming(group=2, fail_after=6), tmp_path)
    with pytest.raises(RuntimeError, match="the engine died"):
        lm.generate_until(requests("aime", 10))
    assert len(stored_lines(tmp_path)) == 6  # three finished groups of two: kept
    again = Streaming(group=2)
    lm = lm_of(again, tmp_path)
    lm.generate_until(requests("aime", 10))
    assert again.calls == [4] and lm.store.added == 4 and lm.store.hits == 6


def test_tokens_per_second_is_the_tasks_tokens_over_its_time(tmp_path, monkeypatch):
    """Each finished group's wall time is shared among its responses by tokens; the task's
    tokens/s is all its tokens over all its time."""
    import limo_exp.evaluation.stored_lm as sl

    ticks = iter(range(0, 1000, 10))  # every clock reading 10 s after the last
    monkeypatch.setattr(sl.time, "perf_counter", lambda: float(next(ticks)))
    lm = lm_of(Streaming(group=2), tmp_path)
    lm.generate_until(requests("aime", 4))  # groups: (1, 2) then (3, 5) tokens
    seconds, tokens = lm.timing.per_task["aime"]
    assert (seconds, tokens) == (20.0, 11)
    assert [(line["n_tokens"], line["seconds"]) for line in stored_lines(tmp_path)] == [
        (1, 10 * 1 / 3),
        (2, 10 * 2 / 3),
        (3, 10 * 3 / 8),
        (5, 10 * 5 / 8),
    ]
