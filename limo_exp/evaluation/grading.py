"""Grading: is a model's response right? The one module every limo_ task uses.

Policy (pinned by tests/test_grading.py; bump GRADER_VERSION when it changes):

- A response that ran out of tokens (``max_gen_toks``) is no answer (status ``truncated``),
  whatever it contains: a box inside an unfinished chain of thought is not an answer.
- Everything up to and including the last ``</think>`` is ignored. A ``<think>`` that is
  never closed means the response was cut off while reasoning: no answer.
- Math: the answer is the content of the LAST ``\\boxed{...}`` (also ``\\boxed 5`` and
  ``\\fbox{...}``), nested braces handled. No box, an empty box or an unclosed box: no
  answer. Nothing else in the text is read (no "the answer is ..." fallback): the prompt
  asks for a box, and a missing one shows up as ``no_answer`` instead of a lucky guess.
- The box content and the gold are compared by math-verify (parse + verify): ``27.0`` =
  ``27``, ``1,000`` = ``1000``, ``90^\\circ`` = ``90``, units in ``\\text{}`` are dropped,
  ``\\frac12`` = ``0.5``, ``10\\%`` = ``10`` (a trailing percent sign is dropped on both
  sides); a decimal matches a fraction when both agree to 6 decimal places (``0.333333`` =
  ``1/3`` but ``0.33`` != ``1/3``). Intervals keep open/closed ends,
  tuples keep order, sets do not, matrices compare entrywise, text answers compare as text.
- Multi-answer golds (a list of several parts, e.g. OlympiadBench ``is_multiple_answer``)
  need every part, in any order, and nothing extra: the box is split at top-level commas
  (or the last k boxes are taken when the model boxed each part).
- Multiple choice (GPQA): the letter A-D of the last ``Answer: X``, ``(X)`` or ``\\boxed{X}``.
- Each grading call has a time limit (SIGALRM, main thread only). math-verify's own
  signal-based timeouts are switched off and replaced by one limit around parse + verify,
  so a timeout is reported as ``status="timeout"`` instead of a silent "wrong". Called from
  another thread (no signals there), grading runs without a time limit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from limo_exp.data.answers import BOX_RE, balanced, boxed_contents, split_answers, strip_thinking

GRADER_VERSION = "1.1"  # 1.1: a response that ran out of tokens is no answer (status truncated)
MATH_VERIFY_VERSION = version("math-verify")
DEFAULT_TIMEOUT_S = 5.0
STATUSES = ("ok", "no_answer", "timeout", "truncated")
TRUNCATED = (
    "\n<limo-exp:truncated/>"  # the generation wrapper appends it to a response that hit its token budget
)


def split_truncated(response: str) -> tuple[str, bool]:
    """A response and whether it ran out of tokens (the mark is removed)."""
    if response.endswith(TRUNCATED):
        return response[: -len(TRUNCATED)], True
    return response, False


_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


class _Quiet(logging.Filter):
    """Drop math-verify's "timeout is disabled" warning: the limit is enforced here instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_Quiet())


@dataclass(frozen=True)
class Verdict:
    correct: bool
    extracted: str | None  # the answer text read from the response; None when there is none
    status: str  # "ok" | "no_answer" | "timeout"


class GradingTimeout(BaseException):
    """Raised by the alarm. A BaseException so that math-verify's ``except Exception`` can't swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise GradingTimeout after ``seconds`` (main thread only; elsewhere, or if an alarm is
    already running, no limit)."""
    usable = (
        seconds is not None
        and seconds > 0
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise GradingTimeout()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- math-verify


def _clean(answer: str) -> str:
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"(\d)\{,\}(\d)", r"\1,\2", answer)  # 1{,}000
    answer = re.sub(r"\s*\\?%$", "", answer)  # 10\% and 10 are the same answer
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", answer):  # thousands separators
        answer = answer.replace(",", "")
    return answer.replace("\n", " ")


@lru_cache(maxsize=4096)
def _parse_cached(answer: str):
    return tuple(parse(f"\\boxed{{{answer}}}", _EXTRACTION, parsing_timeout=None))


def _same(gold: str, pred: str) -> bool:
    g, p = _parse_cached(_clean(gold)), _parse_cached(_clean(pred))
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), timeout_seconds=None))


def equivalent(a: str, b: str, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> bool:
    """Are two extracted answers the same value (``1/2`` and ``0.5``)? For voting (maj@k)."""
    if "".join(a.split()) == "".join(b.split()):
        return True
    try:
        with time_limit(timeout_s):
            return _same(a, b)
    except GradingTimeout:
        return False


def _match_all(golds: list[str], preds: list[str]) -> bool:
    """Every gold part matched by a distinct predicted part (bipartite matching), none extra."""
    if len(golds) != len(preds):
        return False
    ok = [[_same(g, p) for p in preds] for g in golds]
    owner: dict[int, int] = {}

    def assign(gi: int, seen: set[int]) -> bool:
        for pi, hit in enumerate(ok[gi]):
            if hit and pi not in seen:
                seen.add(pi)
                if pi not in owner or assign(owner[pi], seen):
                    owner[pi] = gi
                    return True
        return False

    return all(assign(gi, set()) for gi in range(len(golds)))


def grade_math_detailed(
    response: str, gold: str | list[str], *, timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> Verdict:
    """Grade a math response against one gold answer or a list of parts that all must be given."""
    golds = [gold] if isinstance(gold, str) else [str(g) for g in gold]
    text = strip_thinking(response)
    boxes = boxed_contents(text) if text is not None else []
    pred = boxes[-1] if boxes else None
    if not pred:
        return Verdict(False, None, "no_answer")
    try:
        with time_limit(timeout_s):
            if len(golds) == 1:
                return Verdict(_same(golds[0], pred), pred, "ok")
            parts = split_answers(pred)
            if len(parts) != len(golds) and len(boxes) >= len(golds):
                tail = boxes[-len(golds) :]
                if all(tail):
                    parts = [t for t in tail if t is not None]
                    pred = ", ".join(parts)
            return Verdict(_match_all(golds, parts), pred, "ok")
    except GradingTimeout:
        return Verdict(False, pred, "timeout")


def grade_math(response: str, gold: str | list[str]) -> bool:
    return grade_math_detailed(response, gold).correct


# ---------------------------------------------------------------- multiple choice

_LETTERS = "ABCD"
_CHOICE_RES = (
    re.compile(r"(?i:answer)\s*(?:is)?\s*[:：]?\s*\**\s*\(?([A-D])\)?(?![A-Za-z])"),
    re.compile(r"\(([A-D])\)"),
)


def _letter_in_box(content: str) -> str | None:
    bare = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", content)
    bare = bare.strip().strip("()").strip()
    m = re.fullmatch(r"(?:\\?\()?([A-Da-d])(?:\\?\))?(?:[.:].*)?", bare, flags=re.DOTALL)
    return m.group(1).upper() if m else None


def extract_choice(response: str, letters: str = _LETTERS) -> str | None:
    """The letter of the last ``Answer: X``, ``(X)`` or ``\\boxed{X}`` after any thinking block."""
    text = strip_thinking(response)
    if text is None:
        return None
    found: list[tuple[int, str]] = []
    for rx in _CHOICE_RES:
        for m in rx.finditer(text):
            letter = m.group(1).upper()
            if letter in letters:
                found.append((m.end(), letter))
    for m in BOX_RE.finditer(text):
        j = m.end()
        if j < len(text) and text[j] == "{":
            got = balanced(text, j)
            if got and (letter := _letter_in_box(got[0])) and letter in letters:
                found.append((got[1], letter))
    return max(found)[1] if found else None


def grade_choice_detailed(response: str, gold: str) -> Verdict:
    letter = extract_choice(response)
    if letter is None:
        return Verdict(False, None, "no_answer")
    return Verdict(letter == gold.strip().upper(), letter, "ok")


def grade_choice(response: str, gold: str) -> bool:
    return grade_choice_detailed(response, gold).correct
