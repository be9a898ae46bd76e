"""Offload as a choice: ``accelerate=fsdp_offload`` (FSDP2's CPU offload of the weights' shards,
their gradients and so the optimizer's states) and ``accelerate=deepspeed_zero3_offload`` (ZeRO-3
with the optimizer and the weights offloaded to the CPU). Offload moves where the numbers live,
not what they are: on two CPU processes (gloo, fp32) each trains to one process's losses.

And the DeepSpeed config the recipe writes (``recipe.deepspeed_config``): ``train.max_grad_norm``
reaches DeepSpeed, which clips inside its own step (Accelerate would have it clip at 1.0).

The ZeRO-3 tests need DeepSpeed (``make test-deepspeed``: .venv-deepspeed).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from types import SimpleNamespace

import fsdp_worker
import offload_worker
import pytest
import torch
import yaml

ACCELERATE = offload_worker.REPO / "conf/accelerate"
# fsdp.yaml's two-process test: rows of uneven lengths under a token budget, checkpointing on
FSDP_KW = {
    "global_batch_size": 4,
    "max_tokens_per_micro_batch": 400,
    "max_length": 400,
    "gradient_checkpointing": True,
    "checkpoint_skip_layers": 1,
    "max_steps": 3,
}
ZERO3_KW = {"global_batch_size": 4, "max_length": 400, "max_steps": 3}

needs_deepspeed = pytest.mark.skipif(
    find_spec("deepspeed") is None,
    reason="DeepSpeed is not installed in this venv: `make test-deepspeed` runs this in .venv-deepspeed",
)


def _single(model_dir, **kw) -> list[float]:
    """One process, no sharding, no offload, fp32: the reference losses."""
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    torch.manual_seed(0)
    model, tok = load(str(model_dir))
    cfg = TrainConfig(lr=1e-3, instruction="Reason.", **kw)
    return train(model, tok, fsdp_worker.examples(), cfg, Accelerator(cpu=True)).losses


@pytest.mark.parametrize(
    ("preset", "base"), [("fsdp_offload", "fsdp"), ("deepspeed_zero3_offload", "deepspeed_zero3")]
)
def test_offload_presets_are_their_base_with_offload_on(preset, base):
    """Each preset is its base topology with offload turned on, nothing else changed."""
    on = yaml.safe_load((ACCELERATE / f"{preset}.yaml").read_text())
    off = yaml.safe_load((ACCELERATE / f"{base}.yaml").read_text())
    if base == "fsdp":
        assert (off["fsdp_config"]["fsdp_offload_params"], on["fsdp_config"]["fsdp_offload_params"]) == (
            False,
            True,
        )
        on["fsdp_config"]["fsdp_offload_params"] = False
    else:
        zero = on["deepspeed_config"]
        assert (zero["offload_optimizer_device"], zero["offload_param_device"]) == ("cpu", "cpu")
        zero["offload_optimizer_device"] = zero["offload_param_device"] = "none"
    assert on == off


def _plugin(preset: str):
    """Accelerate's DeepSpeed plugin as ``accelerate launch --config_file <preset>.yaml`` builds it
    (its ``deepspeed_config`` keys as arguments; zero.Init left off in this process)."""
    from accelerate.utils import DeepSpeedPlugin

    conf = yaml.safe_load((ACCELERATE / f"{preset}.yaml").read_text())["deepspeed_config"]
    keys = ("zero_stage", "offload_optimizer_device", "offload_param_device")
    return DeepSpeedPlugin(**{k: conf[k] for k in keys}, zero3_init_flag=False)


def _fill_as_prepare_does(plugin) -> dict:
    """Accelerate's ``prepare`` under DeepSpeed: every ``auto`` of the config filled, gradient
    clipping with 1.0 (its ``_prepare_deepspeed``, accelerate 1.15)."""
    micro = plugin.deepspeed_config["train_micro_batch_size_per_gpu"]
    micro = 1 if micro == "auto" else micro
    plugin.deepspeed_config_process(
        must_match=False,
        gradient_clipping=1.0,
        gradient_accumulation_steps=1,
        train_micro_batch_size_per_gpu=micro,
        train_batch_size=micro * 2,
    )
    return plugin.deepspeed_config


@pytest.mark.parametrize("preset", ["deepspeed_zero3", "deepspeed_zero3_offload"])
def test_deepspeed_config_carries_the_recipe(preset):
    """``train.max_grad_norm`` becomes DeepSpeed's ``gradient_clipping`` (0 or null: 0.0, no
    clipping), and stays so when Accelerate fills the config's ``auto`` values at prepare (where
    it fills 1.0 otherwise); the micro-batch size; under optimizer offload, DeepSpeed's leave to
    step a torch optimizer on the CPU. A token budget per micro-batch: one line, before training."""
    from limo_exp.config import TrainConfig
    from limo_exp.training.recipe import deepspeed_config

    assert _fill_as_prepare_does(_plugin(preset))["gradient_clipping"] == 1.0  # Accelerate's own

    for norm, clip in [(0.3, 0.3), (0.0, 0.0), (None, 0.0)]:
        plugin = _plugin(preset)
        acc = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin))
        assert deepspeed_config(acc, TrainConfig(max_grad_norm=norm, batch_size=2)) is plugin
        conf = _fill_as_prepare_does(plugin)
        assert (conf["gradient_clipping"], conf["train_micro_batch_size_per_gpu"]) == (clip, 2)
        assert conf.get("zero_force_ds_cpu_optimizer", True) is (preset == "deepspeed_zero3")

    budget = TrainConfig(global_batch_size=4, max_tokens_per_micro_batch=400)
    with pytest.raises(ValueError, match="train.max_tokens_per_micro_batch is not supported with DeepSpeed"):
        deepspeed_config(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=_plugin(preset))), budget)
    no_ds = SimpleNamespace(state=SimpleNamespace())
    assert deepspeed_config(no_ds, budget) is None


@pytest.mark.slow
def test_fsdp_offload_gives_the_single_process_loss(tiny_model, tmp_path):
    """``accelerate=fsdp_offload`` on two processes: every sharded weight offloaded (FSDP2's
    CPUOffloadPolicy, unpinned on a CPU), three steps of rows of uneven lengths, and the losses of
    one process without sharding or offload, to 1e-5 (7e-7 here; FSDP without offload: the same
    losses to the bit)."""
    ranks = offload_worker.launch(
        "fsdp_offload", tiny_model, tmp_path, {"mode": "train", "train": FSDP_KW}, 29631
    )
    (tmp_path / "ranks.json").write_text(json.dumps(ranks))
    for report in ranks.values():
        assert (report["world"], report["distributed_type"], report["steps"]) == (
            2,
            "DistributedType.FSDP",
            3,
        )
        assert report["offload"] == {
            "policy": "CPUOffloadPolicy(pin_memory=False)",
            "offload_pin": [[True, False]],
        }
    assert ranks[1]["losses"] == ranks[0]["losses"]
    one = _single(tiny_model, **FSDP_KW)
    assert ranks[0]["losses"] == pytest.approx(one, rel=0, abs=1e-5)
    assert one == pytest.approx([6.28050, 6.12816, 6.04258], abs=1e-5)


@needs_deepspeed
@pytest.mark.deepspeed
def test_zero3_offload_gives_the_single_process_loss_and_clips_at_the_recipes_norm(tiny_model, tmp_path):
    """``accelerate=deepspeed_zero3_offload`` on two processes, built by ``make_accelerator`` (on
    a CPU, DeepSpeed over gloo): the optimizer and the weights offloaded to the CPU, torch's AdamW
    stepped there, DeepSpeed clipping at ``train.max_grad_norm``, and one process's losses to
    1e-5. The norm is 1e-6, so small that AdamW's epsilon (1e-8) shrinks every update: clipping
    at Accelerate's 1.0 instead would end 0.15 lower (AdamW undoes a mere rescaling of the
    gradient: at 0.05 the losses differ by 4e-5 only)."""
    kw = ZERO3_KW | {"max_grad_norm": 1e-6}
    ranks = offload_worker.launch(
        "deepspeed_zero3_offload", tiny_model, tmp_path, {"mode": "train", "train": kw}, 29632
    )
    (tmp_path / "ranks.json").write_text(json.dumps(ranks))
    for report in ranks.values():
        assert (report["world"], report["distributed_type"], report["steps"]) == (
            2,
            "DistributedType.DEEPSPEED",
            3,
        )
        assert report["offload"] == {
            "optimizer_device": "cpu",
            "param_device": "cpu",
            "engine_cpu_offload": True,
            "gradient_clipping": 1e-6,
            "force_ds_cpu_optimizer": False,
        }
    one = _single(tiny_model, **kw)
    assert ranks[0]["losses"] == pytest.approx(one, rel=0, abs=1e-5)
    assert one == pytest.approx([6.28050, 6.21471, 6.19596], abs=1e-5)
    assert _single(tiny_model, **ZERO3_KW)[-1] == pytest.approx(6.04258, abs=1e-5)  # clipped at 1.0
