"""The user turn, one function for training and evaluation, so a model is evaluated on the
prompt it was trained on: the question, lettered options for multiple choice, a blank line,
then the instruction (LIMO's by default)."""

from __future__ import annotations

from limo_exp.config import LIMO_INSTRUCTION


def user_turn(problem: str, instruction: str = LIMO_INSTRUCTION, choices: list[str] | None = None) -> str:
    text = problem.strip()
    if choices:
        text += "\n\n" + "\n".join(f"({letter}) {c}" for letter, c in zip("ABCD", choices))
    return f"{text}\n\n{instruction}" if instruction else text
