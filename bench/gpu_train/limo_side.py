"""limo-exp's side of the GPU training bench: its own training loop (``training.loop.train``)
with the Accelerator ``limo-exp run`` builds (``recipe.make_accelerator``), and FSDP2 in this one
process as rank 0 of a one-process launch of conf/accelerate/fsdp.yaml."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WATCHED = ("layers.0.mlp.down_proj.weight", "layers.0.self_attn.q_proj.weight", "embed_tokens.weight")


class Skipped(Exception):
    """A setting that cannot run here; its message says why."""


def run_limo(model, rows, per_step, seq, extra, gpu, fsdp):
    from accelerate.utils import DistributedType

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.optim import KahanAdamW
    from limo_exp.training.recipe import make_accelerator
    from limo_exp.training.steps import checkpointing

    long = max(len(t.input_ids) for t in rows) > seq // 16
    cfg = TrainConfig(
        lr=5e-6,
        global_batch_size=per_step,
        max_tokens_per_micro_batch=seq if long else per_step * (seq // 16),
        max_length=seq if long else seq // 16,
        gradient_checkpointing="auto",
        max_steps=len(rows) // per_step,
        lora=None,
        **extra,
    )
    sharded = None
    with one_process_fsdp(gpu) if fsdp else contextlib.nullcontext():
        accelerator = make_accelerator(gpu)  # limo-exp run's: the recipe's numerics, FSDP where launched so
        if fsdp and accelerator.distributed_type != DistributedType.FSDP:
            raise Skipped(f"Accelerate gives no FSDP here ({accelerator.distributed_type.value})")
        res = train(model, _Pad(), rows, cfg, accelerator)
        opt = getattr(res.optimizer, "optimizer", res.optimizer)  # Accelerate's wrapper holds it
        if isinstance(opt, KahanAdamW):  # bf16 weights: what the optimizer holds is weight + compensation
            after = {
                n: KahanAdamW.effective(p, opt.state[p])
                for n, p in model.named_parameters()
                if n.endswith(WATCHED)
            }
        else:  # under FSDP the whole weight (one process: its one shard)
            after = {n: _whole(p.detach()) for n, p in model.named_parameters() if n.endswith(WATCHED)}
        after = {n: w.cpu() for n, w in after.items()}
        if fsdp:  # read before the context puts Accelerate's state back
            plugin = accelerator.state.fsdp_plugin
            sharded = {
                "config": "conf/accelerate/fsdp.yaml",
                "version": plugin.fsdp_version,
                "processes": accelerator.num_processes,
                "reshard_after_forward": plugin.reshard_after_forward,
                "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
                "mixed_precision_policy": repr(plugin.mixed_precision_policy),
                "autocast": accelerator.mixed_precision,
            }
    recipe = {
        "master_dtype": cfg.master_dtype,
        "optimizer": cfg.optimizer,
        "loss": res.loss_impl,
        "gradient_checkpointing": checkpointing(cfg),
        "micro_batch_tokens": cfg.max_tokens_per_micro_batch,
        "liger_layers": getattr(res, "liger_layers", cfg.liger_layers),
        "checkpoint_skip_layers": cfg.checkpoint_skip_layers,
    }
    if sharded:
        recipe["fsdp"] = sharded
    return res.losses, recipe, after


def _whole(t):
    """A DTensor (FSDP2's sharded weight) gathered whole; any other tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def fsdp_environment() -> dict:
    """What ``accelerate launch --config_file conf/accelerate/fsdp.yaml`` puts in the environment of
    each process for FSDP: ACCELERATE_USE_FSDP and the FSDP_* variables of its fsdp_config."""
    import yaml

    conf = yaml.safe_load((REPO / "conf" / "accelerate" / "fsdp.yaml").read_text())
    env = {"ACCELERATE_USE_FSDP": "true"}
    for key, value in conf["fsdp_config"].items():
        name = key.removeprefix("fsdp_").upper()
        name = "TRANSFORMER_CLS_TO_WRAP" if name == "TRANSFORMER_LAYER_CLS_TO_WRAP" else name
        env[f"FSDP_{name}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextlib.contextmanager
def one_process_fsdp(gpu: bool):
    """This process as rank 0 of a one-process FSDP launch of conf/accelerate/fsdp.yaml (FSDP2): the
    launcher's environment (a free port) and Accelerate's state started afresh, so that
    ``make_accelerator`` builds the Accelerator ``limo-exp run`` gets there (fp32 weights sharded,
    gathered and reduced in fp32, bf16 autocast on a GPU; on a CPU, over gloo, FSDP turned on by
    hand as the project does). Afterwards the process group, the environment and Accelerate's
    state are put back, for the settings after this one."""
    import socket

    import torch.distributed as dist
    from accelerate.state import AcceleratorState, GradientState

    saved = dict(os.environ)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    os.environ.update(fsdp_environment())
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    had_group = dist.is_initialized()
    try:
        yield
    finally:
        if gpu:
            import torch

            torch.cuda.synchronize()
        if dist.is_initialized() and not had_group:
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


class _Pad:  # limo-exp's rows are packed: no padding is ever made
    pad_token_id = 0
