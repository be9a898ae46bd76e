"""vLLM's tensor and data parallel sizes (issue 31, item 7): ``auto`` from the model's config (its
parameters counted by arithmetic, no weights) and the GPUs' memory; the config's checks; data
parallel engines in processes of their own (stand-in engines: requests dealt, results in order)."""

from __future__ import annotations

from functools import partial

import pytest
from conftest import CONF_DIR
from omegaconf import OmegaConf

from limo_exp.config import ConfigError, DistillConfig, EvalConfig
from limo_exp.evaluation.generation import parallel as P
from limo_exp.evaluation.generation.data_parallel import DataParallelEngine, deal, device_groups
from limo_exp.evaluation.generation.engines import Gen, engine_options
from limo_exp.hardware import GPUS

H100, H200 = GPUS["H100"].memory_bytes, GPUS["H200"].memory_bytes  # 80 GiB, 143,771 MiB
H100_SEEN = 85_520_809_984  # what torch reports for an H100 80GB HBM3


def config(model: str):
    """The model's config from its ``model.shape`` in conf/model/ (config.json's sizes)."""
    from transformers import AutoConfig

    shape = dict(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"))["shape"])
    return AutoConfig.for_model(shape.pop("model_type"), **shape)


def tp(model: str, gpu_bytes: float, gpus: int = 8, max_model_len: int = 32768) -> int:
    span = P.Span.of(config(model))
    return P.choose_tensor_parallel(span, 2, gpu_bytes=gpu_bytes, gpus=gpus, max_model_len=max_model_len)


def test_a_32b_model_spans_two_80gb_gpus_and_one_141gb_gpu():
    assert tp("qwen2_5_32b_instruct", H100) == 2
    assert tp("qwen2_5_32b_instruct", H100_SEEN) == 2  # 65.5 GB of weights + 8.6 GB for one 32k sequence
    assert tp("qwen2_5_32b_instruct", H200) == 1


def test_small_models_take_one_gpu():
    assert tp("qwen2_5_math_1_5b_instruct", H100) == 1
    # 7B in bf16: 15.2 GB weights + 1.9 GB for a 32k sequence + ~3.4 GB: one 24 GB card (21.6 GB at
    # 90%) holds it; a 16 GB card does not
    assert tp("qwen2_5_7b_instruct", 24e9) == 1
    assert tp("qwen2_5_7b_instruct", 16e9) == 2


def test_the_size_divides_the_heads_and_the_gpus():
    # 1.5B (12 heads) on 4 GB cards: 4 fits; 8 would divide the GPUs but not the heads
    assert tp("qwen2_5_math_1_5b_instruct", 4e9, gpus=8) == 4
    with pytest.raises(ConfigError, match="at tensor parallel 2 one GPU needs"):
        tp("qwen2_5_32b_instruct", 24e9, gpus=6)


def test_a_model_that_fits_no_split_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        tp("qwen2_5_32b_instruct", H100, gpus=1)
    msg = str(e.value)
    assert msg.startswith(
        "eval.tensor_parallel_size=auto: a 32.8B-parameter model does not fit 1 GPU(s) of 86 GB"
    )
    assert "weights 65.5, kv_cache 8.6" in msg and "eval.vllm_max_model_len" in msg
    assert tp("qwen2_5_32b_instruct", H100_SEEN, gpus=1, max_model_len=8192) == 1  # a shorter context fits


def test_resolved_sizes_on_a_node_and_on_a_cpu():
    suite = EvalConfig()
    of = partial(P.resolve_parallel, suite, prefix="eval", dtype="bfloat16", max_model_len=32768)
    assert of(config_of=lambda: config("qwen2_5_32b_instruct"), gpus=(8, H100)) == P.Parallel(2, 4)
    assert of(config_of=lambda: config("qwen2_5_32b_instruct"), gpus=(8, H200)) == P.Parallel(1, 8)
    assert of(config_of=lambda: pytest.fail("no config is read on a CPU"), gpus=(0, 0.0)) == P.Parallel(1, 1)
    two = EvalConfig(tensor_parallel_size=3)
    with pytest.raises(ConfigError, match=r"eval.tensor_parallel_size=3: .* 40 attention heads"):
        P.resolve_parallel(
            two, prefix="eval", config_of=lambda: config("qwen2_5_32b_instruct"), dtype="bfloat16",
            max_model_len=None, gpus=(8, H100),
        )  # fmt: skip
    many = DistillConfig(tensor_parallel_size=2, data_parallel_size=8)
    with pytest.raises(
        ConfigError, match="distill.data_parallel_size=8 x tensor_parallel_size=2 needs 16 GPUs"
    ):
        P.resolve_parallel(
            many, prefix="distill", config_of=lambda: config("qwen2_5_32b_instruct"), dtype="bfloat16",
            max_model_len=None, gpus=(8, H100),
        )  # fmt: skip


def test_engine_options_resolve_for_vllm_only(tmp_path, monkeypatch):
    suite = EvalConfig(vllm_max_model_len=8192)
    assert engine_options(suite, context=32768).tensor_parallel_size == 1  # hf: nothing to resolve
    monkeypatch.setattr(P, "visible_gpus", lambda: (4, H100_SEEN))
    monkeypatch.setattr(
        "transformers.AutoConfig.from_pretrained", lambda *a, **k: config("qwen2_5_32b_instruct")
    )
    opts = engine_options(suite, context=32768, backend="vllm", model_path="m", dtype="bfloat16")
    assert (opts.tensor_parallel_size, opts.data_parallel_size, opts.max_model_len) == (1, 4, 8192)


@pytest.mark.parametrize("key", ["tensor_parallel_size", "data_parallel_size"])
def test_the_config_takes_an_int_or_auto(key):
    assert getattr(EvalConfig(), key) == "auto" and getattr(DistillConfig(), key) == "auto"
    assert getattr(EvalConfig.from_dict({key: 2}, "eval"), key) == 2
    for bad in (0, "four"):
        with pytest.raises(ConfigError, match=f"eval.{key}"):
            EvalConfig(**{key: bad})
        with pytest.raises(ConfigError, match=f"distill.{key}"):
            DistillConfig(**{key: bad})


def test_planned_devices():
    assert P.planned_devices("auto", "auto", 8) == 8 and P.planned_devices("auto", "auto", 1) == 1
    assert P.planned_devices(2, "auto", 8) == 8 and P.planned_devices(8, "auto", 1) == 1
    assert P.planned_devices(2, 1, 8) == 2 and P.planned_devices("auto", 2, 8) == 8


def test_requests_are_dealt_round_robin_and_engines_see_their_own_gpus(monkeypatch):
    assert deal(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6")
    assert device_groups(2, 2, cuda=True) == [
        {"CUDA_VISIBLE_DEVICES": "3,4"},
        {"CUDA_VISIBLE_DEVICES": "5,6"},
    ]
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    assert device_groups(2, 1, cuda=False) == [
        {"VLLM_CPU_OMP_THREADS_BIND": "0-1"},
        {"VLLM_CPU_OMP_THREADS_BIND": "2-3"},
    ]


def test_data_parallel_engines_in_their_own_processes(monkeypatch):
    """Two stand-in engines in spawned processes, each seeing its own GPUs: every call's requests
    are dealt over both, each takes its share in one call, results come back in order."""
    import os

    from standin_engines import streaming

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    engine = DataParallelEngine(partial(streaming, 2), size=2, tensor_parallel=1, cuda=True)
    try:
        reqs = [Gen(f"p{i}", max_new=1 + i % 3) for i in range(7)]
        outs = engine.generate(reqs)
        assert [o.text.split("|")[0] for o in outs] == [f"p{i}" for i in range(7)]
        assert [o.n_tokens for o in outs] == [1 + i % 3 for i in range(7)]
        assert engine.calls == [[4, 3]]
        by = {o.text.split("|")[0]: o.text.split("|")[1:] for o in outs}
        assert {tuple(by[f"p{i}"]) for i in (0, 2, 4, 6)} != {tuple(by[f"p{i}"]) for i in (1, 3, 5)}
        assert {by[f"p{i}"][1] for i in (0, 2, 4, 6)} == {"0"} and {by[f"p{i}"][1] for i in (1, 3, 5)} == {
            "1"
        }
        assert os.getpid() not in {int(v[0]) for v in by.values()}
        groups = list(engine.stream(reqs[:5]))  # as they finish: several groups of one call
        assert len(groups) > 1 and sorted(i for g in groups for i, _ in g) == list(range(5))
        assert engine.calls[-1] == [3, 2]
    finally:
        engine.close()


def test_a_failing_engine_stops_the_call_with_its_error():
    from standin_engines import streaming

    engine = DataParallelEngine(partial(streaming, 2, "p3"), size=2, tensor_parallel=1, cuda=False)
    with pytest.raises(RuntimeError, match=r"data-parallel engine 1 .* failed:(.|\n)*cannot answer p3"):
        engine.generate([Gen(f"p{i}", 2) for i in range(4)])
    with pytest.raises(RuntimeError, match="shut down"):
        engine.generate([Gen("p0", 2)])


def test_an_engine_that_does_not_stop_is_killed_with_the_processes_it_started(tmp_path, monkeypatch):
    """Orphaned vLLM engine cores kept ~3 GB each on this machine: a busy engine process that does
    not stop in ``STOP_S`` goes with its children."""
    import psutil
    from standin_engines import Hanging

    from limo_exp.evaluation.generation import data_parallel as D

    monkeypatch.setattr(D, "STOP_S", 1.0)
    pid_file = tmp_path / "child"
    engine = DataParallelEngine(partial(Hanging, str(pid_file)), size=1, cuda=False)
    child = int(pid_file.read_text())
    engine._inboxes[0].put([(0, Gen("p", 1))])  # busy for 600 s
    engine.close()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
