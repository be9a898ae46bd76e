"""Text helpers for pool normalisation: final-answer extraction, solution clean-up, metadata types."""

from __future__ import annotations

import re
from typing import Any

from limo_exp.data.answers import last_boxed  # one box extractor for gold answers and grading

_CALC = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations: 48/2 = <<48/2=24>>24
_HASHES = re.compile(r"(?:^|\n)\s*####\s*([^\n]+?)\s*$")  # GSM8K final line: #### 72
_LEVEL = re.compile(r"(\d+)")


def gsm8k_answer(text: str) -> str | None:
    m = _HASHES.search(text)
    return m.group(1).replace(",", "").strip() if m else None


def extract_answer(text: str) -> str:
    """Gold answer from a solution: last \\boxed{}, else GSM8K ``#### n``, else the whole text when it is
    a bare answer (one short line, as in s1K's reference ``solution``); "" if none."""
    for a in (last_boxed(text), gsm8k_answer(text)):
        if a:
            return a
    t = text.strip()
    return t if t and "\n" not in t and len(t) <= 32 else ""


def clean_solution(text: str) -> str:
    """Drop GSM8K calculator annotations and turn a final ``#### n`` into a boxed answer line."""
    if "<<" in text:
        text = _CALC.sub("", text)
    if "####" in text:
        ans = gsm8k_answer(text)
        if ans is not None:
            text = _HASHES.sub("", text).rstrip() + f"\nThe final answer is $\\boxed{{{ans}}}$."
    return text


def normalize_meta(meta: dict[str, Any], loc: str, error: type[Exception]) -> dict[str, Any]:
    """Typed metadata: level -> int ("Level 5" -> 5, "Level ?" -> None), year -> int, difficulty -> float."""
    out = dict(meta)
    try:
        if "level" in out and out["level"] is not None:
            lv = out["level"]
            if isinstance(lv, str):
                m = _LEVEL.search(lv)
                out["level"] = int(m.group(1)) if m else None
            else:
                out["level"] = int(lv)
        if out.get("year") is not None:
            out["year"] = int(out["year"])
        if out.get("difficulty") is not None:
            out["difficulty"] = float(out["difficulty"])
    except (TypeError, ValueError) as e:
        raise error(f"{loc}: bad metadata value: {e}") from None
    for k, v in out.items():
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise error(f"{loc}: meta.{k} must be a scalar, got {type(v).__name__}")
    return out
