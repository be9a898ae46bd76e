"""The hf engine's static-cache decoding (eval.hf_decoding=static|compiled) against transformers'
generate (eager): the same greedy responses token for token, batches re-formed as rows end,
per-row max_new and stop strings, budget forcing, samples that depend on their seed only, the
batch fitted to memory and out-of-memory handled."""

from __future__ import annotations

import pytest
import torch
from conftest import PROMPTS

from limo_exp.config import ConfigError, EvalConfig
from limo_exp.evaluation.generation import memory, static
from limo_exp.evaluation.generation.engines import EngineOptions, Gen, hf_decoding, sample_seed
from limo_exp.evaluation.generation.hf import HFEngine
from limo_exp.evaluation.generation.memory import cache_bucket, fit_batch
from limo_exp.evaluation.store import NoStore
from limo_exp.evaluation.stored_lm import Budget, StoredLM

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """A tiny random Llama whose responses end after a spread of lengths (its end-of-turn row of
    the output layer scaled up), unlike the test suite's tiny model that never ends."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from limo_exp.training.models import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("varied")
    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
        initializer_range=0.3,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= 2
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def engine(path, decoding_, batch_size=2, **kw):
    return HFEngine(path, EngineOptions(decoding=decoding_, batch_size=batch_size, **kw))


def test_cache_lengths_come_in_few_buckets():
    sizes = [cache_bucket(n) for n in (1, 128, 129, 193, 257, 385, 1000, 20000)]
    assert sizes == [128, 128, 192, 256, 384, 512, 1024, 24576]
    assert cache_bucket(5000, limit=4096) == 4096
    assert len({cache_bucket(n) for n in range(1, 32769)}) == 17  # 128 .. 32768, two per octave


def test_greedy_static_decoding_is_generate_token_for_token(varied):
    """Prompts of different lengths and different max_new, two slots: rows that end leave and
    waiting prompts take their place (more segments than batches), as generate's answers."""
    # seven prompts in two slots: a row ends while another runs on, so the batch is re-formed
    reqs = [Gen(p, max_new=[40, 12, 60][i % 3]) for i, p in enumerate(PROMPTS[:7])]
    eager = engine(varied, "eager").generate(reqs)
    static = engine(varied, "static")
    outs = static.generate(reqs)
    assert outs == eager
    assert {o.finish for o in eager} == {"stop", "length"} and len({o.n_tokens for o in eager}) >= 4
    s = static.stats
    assert s.segments > len(reqs) / 2 and s.decode_steps < sum(r.max_new for r in reqs)
    assert s.shapes == [] and s.compile_seconds == 0.0  # static: nothing compiled


def test_stop_strings_cut_the_same_text(varied):
    long = engine(varied, "eager", batch_size=1).generate([Gen(PROMPTS[1], max_new=60)])[0]
    words = [w for w in long.text.split() if w.isascii() and w.isalpha() and len(w) >= 2]
    assert words, long.text  # the model writes some plain word to stop at
    reqs = [Gen(p, max_new=60, stop=(words[0], "zzzz")) for p in PROMPTS[:4]]
    eager = engine(varied, "eager").generate(reqs)
    assert eager == engine(varied, "static", batch_size=3).generate(reqs)
    assert eager[1].finish == "stop" and words[0] not in eager[1].text


def test_budget_forcing_rounds_are_the_same(varied):
    budget = Budget(think_max=20, think_min=8, max_waits=2, answer_max=6)
    s = {"until": [], "temperature": 0.0, "top_p": 1.0, "max_gen_toks": 40, "budget": None}
    part = [(f"k{i}", "t", i, 0, p, s) for i, p in enumerate(PROMPTS)]
    done = {}
    for d in ("eager", "static"):
        lm = StoredLM(varied, None, NoStore("fp"), lambda d=d: engine(varied, d), budget)
        done[d] = lm._forced(part)
    assert done["static"] == done["eager"]
    assert {x.forced for x in done["eager"]} == {True, False} or any(x.waits for x in done["eager"])


def test_a_sample_depends_on_its_seed_not_on_its_batch(varied):
    """k samples of one prompt are k distinct responses; each comes back the same alone, in
    another batch, or after the batch was re-formed around it."""
    k = [Gen(PROMPTS[0], max_new=30, temperature=1.0, top_p=0.9, seed=sample_seed(f"s{i}")) for i in range(4)]
    others = [Gen(p, max_new=30, temperature=1.0, top_p=0.9, seed=sample_seed(p)) for p in PROMPTS[1:]]
    batched = engine(varied, "static", batch_size=3).generate(others[:2] + k + others[2:])[2:6]
    alone = [engine(varied, "static", batch_size=1).generate([g])[0] for g in k]
    assert batched == alone
    assert len({o.text for o in alone}) == 4
    again = engine(varied, "static", batch_size=1, seed=1).generate(k[:1])[0]
    assert again != alone[0]  # the run's seed (eval's seed) is part of every sample's


def test_compiled_decoding_is_generate_token_for_token(varied):
    """torch.compile'd decoding step (inductor on the CPU); the compile time is counted apart."""
    reqs = [Gen(p, max_new=[30, 9][i % 2]) for i, p in enumerate(PROMPTS[:5])]
    eager = engine(varied, "eager").generate(reqs)
    compiled = engine(varied, "compiled")
    assert compiled.generate(reqs) == eager
    assert compiled.stats.shapes and compiled.stats.compile_seconds > 0
    assert len(compiled.stats.shapes) == len(set(compiled.stats.shapes)) <= 8


def test_auto_decoding_and_attention(varied):
    assert hf_decoding("auto", "cuda") == "compiled" and hf_decoding("auto", "cpu") == "eager"
    with pytest.raises(ValueError, match="unknown hf decoding 'fast'"):
        hf_decoding("fast", "cpu")
    with pytest.raises(ConfigError, match="eval.hf_decoding"):
        EvalConfig(hf_decoding="fast")
    assert engine(varied, "static", attn_implementation="eager").model.config._attn_implementation == "eager"
    assert engine(varied, "static").model.config._attn_implementation == "sdpa"  # auto


def qwen_1_5b_like():
    """Qwen2.5-1.5B-like numbers: 28 layers, 2 KV heads of 128, bf16: 28 KiB of cache a position."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        num_hidden_layers=28, num_key_value_heads=2, num_attention_heads=12, head_dim=128,
        hidden_size=1536, intermediate_size=8960, vocab_size=151936, max_position_embeddings=32768,
    )  # fmt: skip
    return SimpleNamespace(config=cfg, parameters=lambda: iter([torch.zeros(1, dtype=torch.bfloat16)]))


def test_the_batch_is_fitted_to_free_memory(monkeypatch):
    """Per row: the KV store, one layer of it again (a shift's copy), logits and the sampler's
    temporaries; once: a prefill chunk of 1024 tokens (activations, its mask over the keys).
    Free memory counts PyTorch's cached-but-unused blocks (mem_get_info counts them as used)."""
    model = qwen_1_5b_like()
    kv = 2 * 28 * 2 * 128 * 32768 * 2
    per_row, once = memory.decode_bytes(model, 32768)
    assert per_row == kv + kv // 56 + 3 * 151936 * 4 == 958_124_544
    assert once == 1024 * (4 * 1536 + 2 * 8960) * 2 + 4 * 1024 * 32768 == 183_500_800
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (70 * 2**30, 140 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 30 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 20 * 2**30)
    assert (0.8 * 80 * 2**30 - once) // per_row == 71 and fit_batch(model, 32768, cap=1024) == 64
    assert (0.8 * 70 * 2**30 - once) // per_row == 62  # without the cached blocks: 32
    assert fit_batch(model, 32768, cap=16) == 16
    assert fit_batch(model, 4096, cap=1024) == 512
    assert fit_batch(model, 32768, cap=1024, reclaimable=30 * 2**30) == 64  # 96: a power of two
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 20 * 2**30)
    assert fit_batch(model, 32768, cap=1024) == 32


def test_the_batch_is_sized_at_the_models_positions_and_grows_back(varied, monkeypatch):
    """A request over the model's positions sizes its cache at them (32,768, not the 49,152 of
    the next bucket); a later call with a smaller cache gets the larger batch that fits."""
    from limo_exp.evaluation.generation import hf

    eng = engine(varied, "static", batch_size="auto")
    eng.device, eng.model.config.max_position_embeddings = "cuda", 32768
    asked = []
    monkeypatch.setattr(hf, "fit_batch", lambda m, n, cap, reclaimable=0: asked.append(n) or 32768 // n)
    rows = [static.Row([1] * 800, max_new=32000)]
    assert eng._decoder_for(rows).batch_size == 1 and asked == [32768]
    assert eng._decoder_for([static.Row([1] * 10, max_new=500)]).batch_size == 64 and asked[-1] == 512


def test_out_of_memory_halves_the_batch_then_names_the_key(varied, monkeypatch):
    reqs = [Gen(p, max_new=20) for p in PROMPTS]
    want = engine(varied, "eager").generate(reqs)
    real, failures = static.StaticDecoder.run, []

    def flaky(self, rows):
        if self.batch_size > 2:
            failures.append(self.batch_size)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, rows)

    monkeypatch.setattr(static.StaticDecoder, "run", flaky)
    eng = engine(varied, "static", batch_size=8)
    assert eng.generate(reqs) == want and failures == [8, 4] and eng.batch_size == 2

    def always(self, rows):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(static.StaticDecoder, "run", always)
    with pytest.raises(RuntimeError, match="lower eval.max_gen_toks"):
        engine(varied, "static", batch_size=1).generate(reqs)


def test_out_of_memory_while_compiling_halves_the_batch(varied, monkeypatch):
    """torch.compile reports an OOM in its backend as BackendCompilerFailed: halved as any OOM;
    another compiler failure is raised as it is."""
    from torch._dynamo.exc import BackendCompilerFailed

    reqs = [Gen(p, max_new=12) for p in PROMPTS[:4]]
    want = engine(varied, "eager").generate(reqs)
    real, failures = static.StaticDecoder.run, []

    def compiling(self, rows, inner=None):
        if self.batch_size > 2:
            failures.append(self.batch_size)
            raise BackendCompilerFailed(
                lambda: None, inner or torch.cuda.OutOfMemoryError("CUDA out of memory"), None
            )
        return real(self, rows)

    monkeypatch.setattr(static.StaticDecoder, "run", compiling)
    eng = engine(varied, "static", batch_size=4)
    assert eng.generate(reqs) == want and failures == [4] and eng.batch_size == 2
    monkeypatch.setattr(static.StaticDecoder, "run", lambda s, r: compiling(s, r, ValueError("no")))
    with pytest.raises(BackendCompilerFailed):
        engine(varied, "static", batch_size=4).generate(reqs)


def test_eager_batches_of_16_give_batch_1s_greedy_texts(varied):
    """The CPU default batch (engines.AUTO_BATCH) changes no greedy response."""
    reqs = [Gen(p, max_new=30) for p in PROMPTS * 3]
    assert engine(varied, "eager", batch_size=16).generate(reqs) == engine(
        varied, "eager", batch_size=1
    ).generate(reqs)


def test_the_slow_generation_warning_quotes_the_decoding_in_use(caplog):
    """Eager's measured rate for eager runs; a compiled run (auto on CUDA) is never quoted eager's
    rate (~10x below a compiled step's): it has none measured, so no hours are estimated."""
    import logging
    from types import SimpleNamespace

    from limo_exp.evaluation.generation.backend import warn_slow_generation

    caplog.set_level(logging.INFO)
    tasks = {"aime": SimpleNamespace(eval_docs=list(range(30)))}

    def suite(decoding):
        return SimpleNamespace(
            limit=None, batch_size="auto", hf_decoding=decoding, samples_for=lambda name: 64
        )

    hours = warn_slow_generation("hf", "cuda", tasks, suite("eager"), 32768)
    assert hours == pytest.approx(30 * 64 * 32768 / 700 / 3600)
    assert "700 tokens/s measured for eager decoding at batch 64" in caplog.text
    caplog.clear()
    assert warn_slow_generation("hf", "cuda", tasks, suite("auto"), 32768) is None
    assert "compiled decoding" in caplog.text and "no compiled throughput measured" in caplog.text
    assert "700" not in caplog.text


@pytest.mark.parametrize("seed", [2**31, 2**63 - 1, -(2**63)])
def test_a_run_seed_may_be_any_int64(varied, seed):
    """The run's seed and the request's are folded into one int64 (sampling.mix_seed): seeds at and
    past 2**31 overflowed `seed << 32` ("Overflow when unpacking long long")."""
    g = Gen(PROMPTS[0], max_new=8, temperature=1.0, top_p=0.9, seed=sample_seed("s"))
    for d in ("static", "eager"):
        assert engine(varied, d, batch_size=1, seed=seed).generate([g])[0].n_tokens > 0
