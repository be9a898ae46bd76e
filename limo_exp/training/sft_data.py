"""Turning selected examples into supervised fine-tuning tensors.

The prompt is the base model's own chat template applied to the user turn (the problem
plus the instruction); the target is the assistant turn. Labels are -100 on the prompt
and on padding, so the loss is on the assistant's tokens only, and every target ends
with the tokenizer's EOS token.

``train.format`` says which sequences an example gives (``tasks``): ``plain``, one (the problem,
its solution); ``multitask``, two, as Li et al. 2022 ("Explanations from large language models
make small reasoners better") train them: an answer task (the answer prefix before the problem;
the target only ``\\boxed{answer}``) and an explain task (the explain prefix; the target the
worked solution). Evaluation keeps the benchmark's own prompt, without a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from limo_exp.data.prompts import user_turn
from limo_exp.data.records import Example

IGNORE = -100


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_target(self) -> int:
        """Tokens the loss is over: the first token is predicted from nothing, so never counts."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


def _ids(out) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def messages(problem: str, instruction: str, system_prompt: str | None) -> list[dict]:
    user = user_turn(problem, instruction)
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": user}]


@dataclass(frozen=True)
class Task:
    """One training sequence of an example: the problem as the user turn shows it, and the target."""

    name: str  # plain | answer | explain
    problem: str
    target: str


def tasks(ex: Example, fmt: str = "plain", answer_prefix: str = "", explain_prefix: str = "") -> list[Task]:
    """The sequences ``ex`` gives under ``train.format=fmt``: plain, one; multitask, the answer task
    then the explain task. Raises ValueError for a multitask example without an answer."""
    if fmt == "plain":
        return [Task("plain", ex.problem, ex.solution)]
    if fmt != "multitask":
        raise ValueError(f"train.format={fmt!r} is not one of ('plain', 'multitask')")
    if not ex.answer.strip():
        raise ValueError(
            f"example {ex.id} has no answer, so train.format=multitask cannot make its answer task: "
            "choose a pool whose records carry answers, or train.format=plain"
        )
    prefixed = [f"{p}\n\n{ex.problem.strip()}" if p else ex.problem for p in (answer_prefix, explain_prefix)]
    return [
        Task("answer", prefixed[0], f"\\boxed{{{ex.answer.strip()}}}"),
        Task("explain", prefixed[1], ex.solution),
    ]


def tokenize_example(
    ex: Example | Task, tok, *, instruction: str, system_prompt: str | None, max_length: int
) -> Tokenized:
    """An example's plain sequence, or one ``Task`` of it."""
    problem, solution = (ex.problem, ex.target) if isinstance(ex, Task) else (ex.problem, ex.solution)
    prompt_msgs = messages(problem, instruction, system_prompt)
    prompt = _ids(tok.apply_chat_template(prompt_msgs, add_generation_prompt=True, tokenize=True))
    full = _ids(
        tok.apply_chat_template(prompt_msgs + [{"role": "assistant", "content": solution}], tokenize=True)
    )
    alone = tok(solution, add_special_tokens=False)["input_ids"]
    if full[: len(prompt)] != prompt or len(full) - len(prompt) < len(alone):
        # The template renders the assistant turn differently from the generation prompt, or
        # drops part of it (R1-distill templates strip "<think>...</think>" from assistant
        # turns): train on the prompt + the assistant text tokenised on its own.
        full = prompt + alone
    target = full[len(prompt) :]
    eos = tok.eos_token_id
    if eos in target:  # end the target at the (first) EOS; drop template text after it ("\n")
        target = target[: target.index(eos) + 1]
    else:
        target = target + [eos]
    input_ids = (prompt + target)[:max_length]
    labels = ([IGNORE] * len(prompt) + target)[:max_length]
    return Tokenized(input_ids, labels)


def collate(batch: list[Tokenized], pad_id: int):
    """Right-pad to the longest sequence; padding gets attention 0 and label -100."""
    import torch

    width = max(len(t.input_ids) for t in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, t in enumerate(batch):
        n = len(t.input_ids)
        ids[i, :n] = torch.tensor(t.input_ids)
        labels[i, :n] = torch.tensor(t.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack(batch: list[Tokenized]):
    """Concatenate sequences into one row with position ids restarting per sequence, and the
    row's document boundaries (``cu_seq_lens_q/k``, ``max_length_q/k``, computed here, on the host).

    Variable-length attention (``limo_varlen``, flash-attn's) reads the boundaries, so packed and
    unpacked batches give the same loss and no attention crosses a document; ``sdpa`` ignores them
    and builds a block mask from the position ids. The label of the first token of each sequence
    is -100, so no token predicts across a boundary. An empty ``batch`` gives a one-token row
    without targets (a forward that adds nothing, for ranks with fewer rows than others).
    """
    import torch

    from limo_exp.training.attention import boundaries

    if not batch:
        batch = [Tokenized([0], [IGNORE])]
    ids, labels, pos = [], [], []
    for t in batch:
        ids += t.input_ids
        labels += [IGNORE] + t.labels[1:]
        pos += list(range(len(t.input_ids)))
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([pos]),
        **boundaries([len(t.input_ids) for t in batch]),
    }
