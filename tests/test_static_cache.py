"""The static decoding at the model's limits: responses end by their own rules only (never because
the shared cache columns ran out), the attention window follows the columns in use whatever the
budget, prefill in chunks, the GQA attention reads each KV head once (no repeat_kv under
torch.compile), and a decoder's memory goes when it is released."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from conftest import PROMPTS

from limo_exp.evaluation.generation import attention
from limo_exp.evaluation.generation.engines import EngineOptions, Gen
from limo_exp.evaluation.generation.hf import HFEngine
from limo_exp.evaluation.generation.kv import KVStore, prefill_mask
from limo_exp.evaluation.generation.static import Row, StaticDecoder

LIMIT = 128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A tiny random Llama with 128 positions that never ends a response by itself (its
    end-of-turn and pad rows of the output layer zeroed): every response runs to its max_new."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from limo_exp.training.models import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("limited")
    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=LIMIT,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
        initializer_range=0.3,
    )  # fmt: skip
    torch.manual_seed(1)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[[tok.pad_token_id, tok.eos_token_id]] = 0  # generate ends at either
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def engine(path, decoding, batch_size=2):
    return HFEngine(path, EngineOptions(decoding=decoding, batch_size=batch_size))


# prompt + max_new = 120 <= 128 for each; the widest prompt (28 tokens) plus the longest max_new
# (118) is 146: in columns shared from the widest prompt, "hi" was cut at 100 of its 118 tokens
BUDGETS = [(PROMPTS[1], 92), (PROMPTS[5], 10), (PROMPTS[3], 101), (PROMPTS[2], 118)]


def test_responses_end_by_their_own_rules_at_the_models_positions(limited):
    reqs = [Gen(p, max_new=n) for p, n in BUDGETS]
    eager = engine(limited, "eager").generate(reqs)
    assert [(o.n_tokens, o.finish) for o in eager] == [(n, "length") for _, n in BUDGETS]
    static = engine(limited, "static")
    assert static.generate(reqs) == eager
    assert static.stats.shifts >= 1  # the rows were moved left when the columns ran out
    # a row over the positions itself is cut where its own prompt + response reaches them
    over = static.generate([Gen(PROMPTS[1], max_new=200), Gen(PROMPTS[2], max_new=50)])
    assert [(o.n_tokens, o.finish) for o in over] == [(LIMIT - 28, "length"), (50, "length")]


def test_compiled_decoding_at_the_limit_never_repeats_kv(limited, monkeypatch):
    """Compiled (inductor on the CPU) == eager token for token at the model's positions, with
    transformers' repeat_kv made to fail: K and V are read once per KV head. Releasing the
    decoder frees its KV store (nothing, compiled code included, keeps it alive)."""
    import transformers.integrations.sdpa_attention as sdpa
    import transformers.models.llama.modeling_llama as llama

    reqs = [Gen(p, max_new=n) for p, n in BUDGETS]
    eager = engine(limited, "eager").generate(reqs)

    def repeat_kv(*a, **k):
        raise AssertionError("K/V repeated per query head")

    monkeypatch.setattr(sdpa, "repeat_kv", repeat_kv)
    monkeypatch.setattr(llama, "repeat_kv", repeat_kv)
    compiled = engine(limited, "compiled")
    assert compiled.generate(reqs) == eager
    assert compiled.stats.shapes == [(2, LIMIT)] and compiled.stats.compile_seconds > 0
    store = weakref.ref(compiled._decoder.store.k[0])
    compiled._decoder.release()
    gc.collect()
    assert store() is None


def test_the_attention_window_follows_the_columns_in_use(limited):
    """A store of 1,024 columns (left by a call with a larger budget) decoded at windows of 128,
    then 192 once the longer row passes 128 columns: the responses are generate's."""
    reqs = [Gen(PROMPTS[1], max_new=150), Gen(PROMPTS[2], max_new=30)]
    eager = engine(limited, "eager").generate(reqs)
    eng = engine(limited, "static")
    eng.model.config.max_position_embeddings = 4096  # the same weights, a longer context
    decoder = StaticDecoder(eng.model, eng.tok, eng._eos_ids(), batch_size=2, compiled=False)
    decoder.store = KVStore(eng.model, 2, 1024)
    rows = [Row(x, r.max_new) for x, r in zip(eng._encode([r.prompt for r in reqs]), reqs)]
    decoder.run(rows)
    assert [eng._out(r.out, (), r.finish == "stop") for r in rows] == eager
    assert decoder.stats.windows == [128, 192] and decoder.store.length == 1024


def test_prefill_in_chunks_is_prefill_whole(limited):
    """Prompts of 28 and 27 tokens prefilled 5 tokens a forward: the same responses."""
    reqs = [Gen(p, max_new=20) for p in PROMPTS[:6]]
    eager = engine(limited, "eager").generate(reqs)
    eng = engine(limited, "static")
    eng._decoder = StaticDecoder(
        eng.model, eng.tok, eng._eos_ids(), batch_size=2, compiled=False, prefill_chunk=5
    )
    assert eng.generate(reqs) == eager


@pytest.mark.parametrize("q", [1, 5])
def test_grouped_sdpa_is_attention_with_repeated_kv(q):
    """Queries of 6 heads over 2 KV heads under a mask, one query (decoding) or a chunk
    (prefill): the output of attention over K/V repeated per query head (fp32)."""
    torch.manual_seed(0)
    b, h, kv, k, d = 2, 6, 2, 11, 8
    query = torch.randn(b, q, h, d).transpose(1, 2)  # as the model makes it: not contiguous
    key, value = torch.randn(b, kv, k, d), torch.randn(b, kv, k, d)
    if q == 1:
        mask = torch.rand(b, 1, 1, k) > 0.3
        mask[..., -1] = True
    else:
        mask = prefill_mask(0, 6, q, "cpu")  # 6 columns before, 5 new
    rep_k, rep_v = key.repeat_interleave(h // kv, 1), value.repeat_interleave(h // kv, 1)
    scores = (query @ rep_k.transpose(-1, -2)) * d**-0.5
    want = (scores + mask if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))).softmax(
        -1
    ) @ rep_v
    got = attention.grouped_sdpa(query, key, value, mask, d**-0.5)
    torch.testing.assert_close(got, want.transpose(1, 2), rtol=1e-5, atol=1e-6)
