"""Label masking: -100 exactly on prompt and padding; the target ends with EOS."""

from __future__ import annotations

from limo_exp.data.records import Example
from limo_exp.training.sft_data import IGNORE, collate, tokenize_example


def _tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_labels_mask_prompt_and_padding(tiny_model):
    tok = _tok(tiny_model)
    exs = [
        Example("a", "What is 2+3?", "2+3=5, so \\boxed{5}.", "5", "short"),
        Example("b", "A longer problem about a tank of water and a pump.", "\\boxed{7}", "7", "answer_only"),
    ]
    toks = [
        tokenize_example(e, tok, instruction="Reason.", system_prompt="Be brief.", max_length=512)
        for e in exs
    ]
    for e, t in zip(exs, toks):
        prompt = tok.apply_chat_template(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": e.problem + "\n\nReason."},
            ],
            add_generation_prompt=True,
            tokenize=True,
        )["input_ids"]
        n = len(prompt)
        assert t.input_ids[:n] == prompt
        assert t.labels[:n] == [IGNORE] * n  # the whole prompt is masked
        target = t.labels[n:]
        assert IGNORE not in target  # every assistant token is a target
        assert target[-1] == tok.eos_token_id and target.count(tok.eos_token_id) == 1
        assert tok.decode(target[:-1]) == e.solution
    batch = collate(toks, tok.pad_token_id)
    short = min(range(2), key=lambda i: len(toks[i].input_ids))
    n = len(toks[short].input_ids)
    assert (batch["labels"][short, n:] == IGNORE).all()  # padding is masked
    assert (batch["attention_mask"][short, n:] == 0).all() and (batch["attention_mask"][short, :n] == 1).all()
    assert int((batch["labels"] != IGNORE).sum()) == sum(t.n_target for t in toks)


def test_truncation_keeps_labels_aligned(tiny_model):
    tok = _tok(tiny_model)
    t = tokenize_example(
        Example("a", "p " * 5, "s " * 50, "1", "short"),
        tok,
        instruction="",
        system_prompt=None,
        max_length=40,
    )
    assert len(t.input_ids) == len(t.labels) == 40
    assert all(
        lab in (IGNORE, tok_id) for lab, tok_id in zip(t.labels, t.input_ids)
    )  # a label is its own token
    assert t.labels[-1] == t.input_ids[-1] != IGNORE  # the cut falls inside the solution: still a target


def test_template_that_strips_reasoning_keeps_the_whole_target(tiny_model):
    """R1-distill style templates drop '<think>...</think>' from assistant turns; the target must not."""
    tok = _tok(tiny_model)
    tok.chat_template = (
        "{% for m in messages %}{% set c = m['content'] %}"
        "{% if m['role'] == 'assistant' and '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + c + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    sol = "<think>Let me check 2+3 twice.</think>So \\boxed{5}."
    t = tokenize_example(
        Example("a", "What is 2+3?", sol, "5", "long"),
        tok,
        instruction="",
        system_prompt=None,
        max_length=512,
    )
    target = [x for x in t.labels if x != IGNORE]
    assert tok.decode(target[:-1]) == sol and target[-1] == tok.eos_token_id


def test_training_and_evaluation_share_the_user_turn():
    from limo_exp.data.records import BenchItem
    from limo_exp.evaluation.tasks.utils import DEFAULT_INSTRUCTION, build_prompt
    from limo_exp.training.sft_data import messages

    item = BenchItem(task="math500", id="1", problem="What is 2+3? ", answer="5")
    assert messages(item.problem, DEFAULT_INSTRUCTION, None)[-1]["content"] == build_prompt(item)
    assert build_prompt(item) == "What is 2+3?\n\n" + DEFAULT_INSTRUCTION


def test_a_target_on_the_first_token_is_not_counted():
    """Nothing precedes the first token, so no loss term predicts it: the step's normaliser
    (n_target) must not count it, or a sequence without a prompt lowers the loss."""
    from limo_exp.training.sft_data import Tokenized, pack

    no_prompt, prompted = Tokenized([5, 6, 7], [5, 6, 7]), Tokenized([5, 6, 7], [IGNORE, 6, 7])
    assert (no_prompt.n_target, prompted.n_target) == (2, 2)
    row = pack([no_prompt, prompted])
    assert int((row["labels"][:, 1:] != IGNORE).sum()) == no_prompt.n_target + prompted.n_target
