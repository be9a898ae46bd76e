"""Answer text: thinking blocks, \\boxed{} contents and multi-part answers (pure string work).

One extractor for gold answers (pools) and model responses (grading), so the two never read a
box differently.
"""

from __future__ import annotations

import re

BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def strip_thinking(response: str) -> str | None:
    """The text after the last ``</think>``; None when a ``<think>`` was opened and never closed."""
    if "</think>" in response:
        return response.rsplit("</think>", 1)[1]
    if "<think>" in response:
        return None
    return response


def balanced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start] == '{'`` and the index after it."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def boxed_contents(text: str) -> list[str | None]:
    """Contents of every ``\\boxed``/``\\fbox`` in order; None for one that is never closed."""
    out: list[str | None] = []
    for m in BOX_RE.finditer(text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            got = balanced(text, j)
            out.append(got[0].strip() if got else None)
        else:  # \boxed 5: one token
            tok = re.match(r"[^\s$]+", text[j:])
            out.append(tok.group(0).rstrip(".,;") if tok and j > m.end() else None)
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last box; None if there is no box or it never closes ("" for an empty box)."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def split_answers(text: str) -> list[str]:
    """Split at top-level commas/semicolons (not inside () [] {}), drop ``$``, ``\\{ \\}`` and
    "and": ``"$69$,$84$"`` -> ``["69", "84"]``, ``"(1,2), (3,4)"`` -> ``["(1,2)", "(3,4)"]``."""
    text = text.replace("$", "").strip()
    text = re.sub(r"\\text\{\s*(and|or)\s*\}", ",", text)
    text = re.sub(r"\s+(and|or)\s+", ",", text)
    m = re.fullmatch(r"(?:\\left)?\\\{(.*)(?:\\right)?\\\}", text, flags=re.DOTALL)
    if m:
        text = m.group(1).removesuffix("\\right").strip()
    parts, depth, cur = [], 0, ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "{}":
                depth += 1 if nxt == "{" else -1
            cur += text[i : i + 2]
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c in ",;" and depth <= 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
