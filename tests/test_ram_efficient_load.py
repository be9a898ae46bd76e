"""Loading a model on several ranks without a whole copy on each: under FSDP's RAM-efficient
loading (``fsdp_cpu_ram_efficient_loading``, conf/accelerate/fsdp.yaml) only rank 0 reads the
weights and the others build on the meta device (``models.load``); under ZeRO-3
(``zero3_init_flag``) each layer is partitioned as it is built. For a 32B model in fp32 on 8
ranks of a node that is 128 GB of host memory instead of 1 TB.

The two-process tests load a model saved in bf16, as hub checkpoints are, into the recipe's fp32
master weights (so that a loaded copy is private memory, not pages of the file mapped), and
measure each rank's parameters and resident memory (tests/offload_worker.py).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import offload_worker
import pytest
import torch

needs_deepspeed = pytest.mark.skipif(
    find_spec("deepspeed") is None,
    reason="DeepSpeed is not installed in this venv: `make test-deepspeed` runs this in .venv-deepspeed",
)


@pytest.fixture(scope="module")
def bigger_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's tokenizer and architecture, 12 layers at width 1024: 40.7M parameters,
    163 MB in fp32 (far above what loading itself allocates, a layer 8% of it), saved in bf16."""
    from transformers import AutoConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("bigger")
    config = AutoConfig.from_pretrained(tiny_model)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 1024, 1024, 12
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    for f in tiny_model.glob("*"):  # the tokenizer's files
        if not (out / f.name).exists():
            (out / f.name).symlink_to(f)
    return out


def _whole(model_dir: Path) -> tuple[int, float]:
    """The model's fp32 bytes and the sum of all of its weights, read in this process."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return (
        sum(p.numel() * 4 for p in model.parameters()),
        sum(p.double().sum().item() for p in model.parameters()),
    )


def test_weights_from_rank0_only_under_fsdp_ram_efficient_loading_off_rank_0(monkeypatch):
    """Rank 0, or no FSDP, or FSDP without RAM-efficient loading: this process reads the weights."""
    from limo_exp.training.models import weights_from_rank0

    env = {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true", "RANK": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert weights_from_rank0() == "rank 1 builds on the meta device, FSDP fills its shard from rank 0"
    monkeypatch.setenv("RANK", "0")
    assert weights_from_rank0() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    assert weights_from_rank0() is None
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert weights_from_rank0() is None


def test_empty_weights_is_the_model_without_its_weights(tiny_model):
    """Every parameter on meta, the output layer tied to the embedding as in the file, the rotary
    frequencies and the generation config as loaded, and a distinct ``data_ptr()`` for each
    weight (Accelerate's FSDP2 prepare matches the optimizer's weights by it; meta tensors all say 0)."""
    from transformers import AutoModelForCausalLM

    from limo_exp.training.models import empty_weights

    read = AutoModelForCausalLM.from_pretrained(tiny_model)
    empty = empty_weights(str(tiny_model), trust_remote_code=False, revision=None, dtype=torch.float32)
    assert {p.device.type for p in empty.parameters()} == {"meta"}
    assert [(n, p.shape, p.dtype) for n, p in empty.named_parameters()] == [
        (n, p.shape, p.dtype) for n, p in read.named_parameters()
    ]
    assert empty.lm_head.weight is empty.model.embed_tokens.weight
    for name, buffer in read.named_buffers():
        torch.testing.assert_close(dict(empty.named_buffers())[name], buffer, rtol=0, atol=0)
    assert empty.generation_config.to_dict() == read.generation_config.to_dict()
    pointers = [p.data_ptr() for p in empty.parameters()]
    assert len(set(pointers)) == len(pointers) == 20 and 0 not in pointers


def test_n_parameters_counts_zero3_partitions_whole(tiny_model):
    """A ZeRO-3 rank's parameter is empty (``numel()`` 0) with its whole size in ``ds_numel``: the
    count (the cost figures' 6 N D) is the model's, not 0."""
    from transformers import AutoModelForCausalLM

    from limo_exp.training.models import n_parameters

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    whole = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.ds_numel = p.numel()
        p.data = torch.empty(0)
    assert sum(p.numel() for p in model.parameters()) == 0
    assert n_parameters(model) == whole == 106816


def _measured(ranks: dict, full: int, total: float) -> None:
    """What both topologies show: rank 0 reads the whole model (its peak memory over loading is
    above the model's fp32 size: the probe sees a loaded model); the two ranks' shards sum to the
    file's weights, and are two halves, not two copies."""
    assert ranks[0]["load_peak"] > 0.9 * full, ranks[0]
    assert ranks[0]["checksum"] + ranks[1]["checksum"] == pytest.approx(total, rel=1e-9, abs=1e-6)
    assert ranks[1]["checksum"] != pytest.approx(ranks[0]["checksum"], rel=1e-3)


@pytest.mark.slow
def test_fsdp_rank_1_builds_on_meta_and_gets_its_shard_from_rank_0(bigger_model, tmp_path):
    """conf/accelerate/fsdp.yaml on two processes: at load rank 0 holds the 163 MB of fp32 weights
    and rank 1 none (all on meta); after ``prepare`` each holds its half, and the two halves sum to
    the checkpoint's weights."""
    full, total = _whole(bigger_model)
    ranks = offload_worker.launch("fsdp", bigger_model, tmp_path / "out", {"mode": "load"}, 29621)
    (tmp_path / "ranks.json").write_text(json.dumps(ranks))
    assert ranks[0]["at_load"] == {"cpu": full, "meta": 0, "zero3": 0}
    assert ranks[1]["at_load"] == {"cpu": 0, "meta": full, "zero3": 0}
    for r in (0, 1):
        assert ranks[r]["after_prepare"] == {"cpu": full // 2, "meta": 0, "zero3": 0}
        assert ranks[r]["n_parameters"] == [full // 4, full // 4]
    assert ranks[1]["load_peak"] < 0.1 * full, ranks[1]  # nothing of the weights' size at load
    assert ranks[1]["prepare_peak"] < 0.75 * full, ranks[1]  # its half, and a weight in flight
    _measured(ranks, full, total)


@needs_deepspeed
@pytest.mark.deepspeed
def test_zero3_init_partitions_at_load_on_every_rank(bigger_model, tmp_path):
    """conf/accelerate/deepspeed_zero3.yaml on two processes: each rank's parameters are empty from
    load on, each rank holds half of every weight (its partition) and rank 1 never much more, only
    rank 0 reads the file, and ``n_parameters`` still counts the whole model (the parameters'
    ``numel()`` sum to 0, what limo-exp run logged as the cost figures' N)."""
    full, total = _whole(bigger_model)
    ranks = offload_worker.launch("deepspeed_zero3", bigger_model, tmp_path / "out", {"mode": "load"}, 29622)
    (tmp_path / "ranks.json").write_text(json.dumps(ranks))
    for r in (0, 1):
        assert ranks[r]["distributed_type"] == "DistributedType.DEEPSPEED"
        assert ranks[r]["at_load"]["cpu"] == 0 and ranks[r]["at_load"]["zero3"] == pytest.approx(
            full / 2, rel=1e-3
        )
        assert ranks[r]["n_parameters"] == [full // 4, 0]
    # its half, and a layer in flight (DeepSpeed's optimizer states come at prepare, not measured):
    # 0.63 of the model here (103 MB); a rank that read the file would hold the whole model, 1.0 or more
    assert ranks[1]["load_peak"] < 0.9 * full, ranks[1]
    _measured(ranks, full, total)
