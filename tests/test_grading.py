"""The grader's verdicts, pinned: every real gold, every MATH-500 reference solution, and a
table of tricky answer forms judged both ways (right AND wrong)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import EVAL_DIR, needs_eval_data

from limo_exp.data.answers import last_boxed, split_answers, strip_thinking
from limo_exp.evaluation import grading
from limo_exp.evaluation.grading import (
    GRADER_VERSION,
    MATH_VERIFY_VERSION,
    extract_choice,
    grade_choice,
    grade_choice_detailed,
    grade_math,
    grade_math_detailed,
)


def _rows(name: str) -> list[dict]:
    with (EVAL_DIR / name).open() as f:
        return [json.loads(line) for line in f if line.strip()]


# Golds that cannot grade correct against themselves, with the reason. Empty today: the test
# fails when a new failure appears AND when a listed one starts passing, so the list stays true.
GOLD_EXCEPTIONS: dict[tuple[str, str], str] = {}
# MATH-500 reference solutions whose last box does not grade correct against the answer field.
SOLUTION_EXCEPTIONS: dict[str, str] = {}
# Pairs of different golds (gold, other) that the grader deliberately counts as the same answer.
ACCEPTED_COLLISIONS = {("5", "x=5"): "an assignment x=5 is accepted for the value 5 (math-verify policy)"}


@needs_eval_data
@pytest.mark.parametrize("benchmark", ["math500", "aime24", "aime25", "amc23", "olympiadbench"])
def test_every_gold_boxed_grades_correct(benchmark):
    from limo_exp.data.benchmarks import load_benchmark

    failures = {}
    for item in load_benchmark(benchmark, EVAL_DIR):
        gold = item.answers if len(item.answers) > 1 else item.answer
        response = f"The final answer is \\boxed{{{', '.join(item.answers)}}}."
        verdict = grade_math_detailed(response, gold)
        if not verdict.correct:
            failures[(benchmark, item.id)] = verdict
    expected = {k for k in GOLD_EXCEPTIONS if k[0] == benchmark}
    assert set(failures) == expected, failures


@needs_eval_data
def test_every_math500_solution_grades_correct():
    failures = {}
    for row in _rows("math500.jsonl"):
        if not grade_math(row["solution"], row["answer"]):
            failures[row["unique_id"]] = row["answer"]
    assert set(failures) == set(SOLUTION_EXCEPTIONS), failures


@needs_eval_data
def test_different_golds_do_not_match():
    """No false positives: each MATH-500 / OlympiadBench gold against its neighbour's gold."""
    from limo_exp.data.benchmarks import load_benchmark

    hits = []
    for bench in ("math500", "olympiadbench"):
        items = load_benchmark(bench, EVAL_DIR)
        for a, b in zip(items, items[1:] + items[:1]):
            if a.answers == b.answers:
                continue
            gold = a.answers if len(a.answers) > 1 else a.answer
            if grade_math(f"\\boxed{{{', '.join(b.answers)}}}", gold):
                hits.append((a.answer, b.answer))
    assert set(hits) <= set(ACCEPTED_COLLISIONS), hits


# (response, gold, expected correct, expected status)
TRICKY = [
    # fractions vs decimals: exact fractions and decimals equal to 6 places match, rounder ones don't
    ("\\boxed{\\frac{1}{2}}", "0.5", True, "ok"),
    ("\\boxed{0.5}", "\\frac12", True, "ok"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac34", True, "ok"),
    ("\\boxed{0.333333}", "\\frac13", True, "ok"),
    ("\\boxed{0.33}", "\\frac13", False, "ok"),
    ("\\boxed{27.0}", "27", True, "ok"),
    ("\\boxed{27}", "27.0", True, "ok"),
    ("\\boxed{27.5}", "27", False, "ok"),
    # several boxes: the last counts
    ("first \\boxed{3}, then \\boxed{4}", "4", True, "ok"),
    ("first \\boxed{3}, then \\boxed{4}", "3", False, "ok"),
    # think tags
    ("<think>maybe \\boxed{4}</think> So \\boxed{5}", "5", True, "ok"),
    ("<think>maybe \\boxed{4}</think> So \\boxed{5}", "4", False, "ok"),
    ("<think>still thinking \\boxed{5}", "5", False, "no_answer"),  # truncated inside thinking
    ("<think>done</think>", "5", False, "no_answer"),
    # ordered tuples and intervals
    ("\\boxed{(1,2)}", "(1,2)", True, "ok"),
    ("\\boxed{(2,1)}", "(1,2)", False, "ok"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True, "ok"),
    ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True, "ok"),
    ("\\boxed{[1,2)}", "[1,2)", True, "ok"),
    ("\\boxed{(1,2]}", "[1,2)", False, "ok"),
    ("\\boxed{[1,2]}", "[1,2)", False, "ok"),
    ("\\boxed{(-\\infty, 3)}", "(-\\infty,3)", True, "ok"),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty,3)", False, "ok"),
    # sets: order-free, but all elements
    ("\\boxed{\\{3,1,2\\}}", "\\{1,2,3\\}", True, "ok"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2,3\\}", False, "ok"),
    # units and degrees
    ("\\boxed{5\\text{ cm}}", "5", True, "ok"),
    ("\\boxed{6\\text{ cm}}", "5", False, "ok"),
    ("\\boxed{30^\\circ}", "30", True, "ok"),
    ("\\boxed{30}", "30^\\circ", True, "ok"),
    ("\\boxed{60^\\circ}", "30^\\circ", False, "ok"),
    ("\\boxed{10\\%}", "10", True, "ok"),
    ("\\boxed{\\$18.90}", "18.90", True, "ok"),
    # matrices
    (
        "\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        True,
        "ok",
    ),
    (
        "\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 4 & 3 \\end{pmatrix}}",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        False,
        "ok",
    ),
    # text answers
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", True, "ok"),
    ("\\boxed{C}", "\\text{(C)}", True, "ok"),
    ("\\boxed{\\text{(D)}}", "\\text{(C)}", False, "ok"),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True, "ok"),
    ("\\boxed{Evelyn}", "\\text{Evelyn}", True, "ok"),
    ("\\boxed{\\text{Bob}}", "\\text{Evelyn}", False, "ok"),
    # thousands separators
    ("\\boxed{1,000}", "1000", True, "ok"),
    ("\\boxed{1{,}000}", "1000", True, "ok"),
    ("\\boxed{1000}", "1,000", True, "ok"),
    ("\\boxed{1,001}", "1000", False, "ok"),
    # algebra
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True, "ok"),
    ("\\boxed{x^2+1}", "(x+1)^2", False, "ok"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True, "ok"),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt3}{2}", False, "ok"),
    # box forms, empty and missing answers
    ("\\boxed 5", "5", True, "ok"),
    ("\\fbox{5}", "5", True, "ok"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt2}{2}", True, "ok"),
    ("\\boxed{}", "5", False, "no_answer"),
    ("so it is \\boxed{5", "5", False, "no_answer"),  # cut off inside the box
    ("the answer is 5", "5", False, "no_answer"),  # no box: nothing is read
    ("", "5", False, "no_answer"),
    # multi-answer golds: every part, any order, nothing extra
    ("\\boxed{2, 1}", ["1", "2"], True, "ok"),
    ("\\boxed{1}", ["1", "2"], False, "ok"),
    ("\\boxed{1, 2, 3}", ["1", "2"], False, "ok"),
    ("\\boxed{1} and \\boxed{2}", ["1", "2"], True, "ok"),
    ("\\boxed{\\{69, 84\\}}", ["69", "84"], True, "ok"),
    ("\\boxed{69 \\text{ and } 84}", ["69", "84"], True, "ok"),
    ("\\boxed{(1,2), (3,4)}", ["(3,4)", "(1,2)"], True, "ok"),
    ("\\boxed{(1,2), (4,3)}", ["(3,4)", "(1,2)"], False, "ok"),
]


@pytest.mark.parametrize("response,gold,correct,status", TRICKY)
def test_tricky_forms(response, gold, correct, status):
    v = grade_math_detailed(response, gold)
    assert (v.correct, v.status) == (correct, status), v
    assert grade_math(response, gold) is correct


def test_extraction_helpers():
    assert last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{}") == ""
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{3") is None
    assert strip_thinking("<think>a</think>b") == "b"
    assert strip_thinking("<think>a") is None
    assert strip_thinking("plain") == "plain"
    assert split_answers("$(1,8,19), (2,7,13)$") == ["(1,8,19)", "(2,7,13)"]
    assert split_answers("$69$,$84$") == ["69", "84"]
    assert split_answers("$f(x)=x,f(x)=-x$") == ["f(x)=x", "f(x)=-x"]
    assert split_answers("\\frac{1}{2}, \\{a, b\\}") == ["\\frac{1}{2}", "\\{a, b\\}"]


def test_verdict_reports_extracted_text():
    v = grade_math_detailed("<think>x</think> The answer is \\boxed{\\frac{1}{2}}.", "0.5")
    assert v == grading.Verdict(True, "\\frac{1}{2}", "ok")


def test_timeout_is_reported(monkeypatch):
    monkeypatch.setattr(grading, "_same", lambda g, p: time.sleep(3) or True)
    start = time.monotonic()
    v = grade_math_detailed("\\boxed{1}", "1", timeout_s=0.2)
    assert v == grading.Verdict(False, "1", "timeout")
    assert time.monotonic() - start < 2


def test_grading_off_the_main_thread_runs_without_limit():
    out = {}

    def work():
        out["v"] = grade_math_detailed("\\boxed{\\frac{2}{4}}", "0.5")

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert out["v"] == grading.Verdict(True, "\\frac{2}{4}", "ok")


CHOICES = [
    ("Answer: B", "B", True),
    ("Answer: (B)", "B", True),
    ("The answer is C", "B", False),
    ("I first thought (A). Answer: C", "C", True),
    ("Answer: B, but wait, it is (D)", "D", True),  # the last one counts
    ("\\boxed{D}", "D", True),
    ("\\boxed{\\text{(B)}}", "B", True),
    ("Answer: A ... so the final answer is \\boxed{C}", "A", False),
    ("<think>Answer: A</think>Answer: B", "B", True),
    ("<think>Answer: A", "A", False),  # truncated thinking: no answer
    ("the answer is a function of x", "A", False),  # lower-case "a" is not a letter choice
    ("no letter here", "A", False),
]


@pytest.mark.parametrize("response,gold,correct", CHOICES)
def test_choice_grading(response, gold, correct):
    assert grade_choice(response, gold) is correct


def test_choice_no_answer_status():
    assert grade_choice_detailed("nothing", "A").status == "no_answer"
    assert extract_choice("Answer: B. Hmm (C)") == "C"


def test_versions_exposed():
    assert GRADER_VERSION
    assert MATH_VERIFY_VERSION == "0.9.0"
