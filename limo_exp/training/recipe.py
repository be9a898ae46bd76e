"""What the recipe does to the model before its first step: gradient checkpointing, the loss,
Liger's layer kernels, the optimizer and schedule, Accelerate's wrapping, and the state a killed
attempt left (``setup``, ``resume``); the training loop (``loop.train``) then runs the steps.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from limo_exp.config import TrainConfig
from limo_exp.training.sft_data import Tokenized
from limo_exp.training.steps import checkpointing, micro_size

log = logging.getLogger(__name__)


def sharded(accelerator) -> bool:
    """Does Accelerate shard the model (FSDP)?"""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


@dataclass
class Prepared:
    model: Any  # as Accelerate wrapped it
    optimizer: Any
    scheduler: Any
    loss_impl: str  # liger | target_only | hf
    attn_implementation: str
    attn_reason: str
    liger_layers: bool


def _base(model):
    """The model itself, or under LoRA the base model the adapters wrap."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def skip_checkpointing(model, n: int) -> None:
    """Run the last ``n`` decoder layers without gradient checkpointing (their activations are
    kept: no recomputation, more memory). ValueError when the model has fewer layers."""
    if not n:
        return
    base = _base(model)
    layers = base.get_decoder().layers
    if n > len(layers):
        raise ValueError(f"train.checkpoint_skip_layers={n}, but the model has {len(layers)} decoder layers")
    for layer in layers[len(layers) - n :]:
        layer.gradient_checkpointing = False  # transformers' GradientCheckpointingLayer reads this per call


def accumulation_steps(cfg: TrainConfig, world_size: int = 1) -> int:
    """Micro-batches per optimizer step on each of ``world_size`` processes: ``global_batch_size /
    (batch_size x world_size)`` when a global batch is set (the same steps on 1 or 8 GPUs), else
    ``grad_accum`` (default 1). Raises ValueError when the global batch does not divide."""
    if cfg.global_batch_size is None:
        if cfg.max_tokens_per_micro_batch:
            raise ValueError(
                "train.max_tokens_per_micro_batch needs train.global_batch_size (sequences per step)"
            )
        return cfg.grad_accum or 1
    per_micro = micro_size(cfg) * world_size
    accum, rest = divmod(cfg.global_batch_size, per_micro)
    if rest or accum < 1:
        raise ValueError(
            f"train.global_batch_size={cfg.global_batch_size} is not a multiple of train.batch_size="
            f"{cfg.batch_size} x {world_size} process(es) = {per_micro}: change one of them"
        )
    if cfg.grad_accum is not None and cfg.grad_accum != accum:
        raise ValueError(
            f"train.grad_accum={cfg.grad_accum} contradicts train.global_batch_size={cfg.global_batch_size} "
            f"(= {accum} micro-batches of {cfg.batch_size} on {world_size} process(es)): set grad_accum=null"
        )
    return accum


def sequences_per_step(cfg: TrainConfig, world_size: int = 1) -> int:
    """Sequences an optimizer step takes over all ``world_size`` processes."""
    return micro_size(cfg) * accumulation_steps(cfg, world_size) * world_size


def n_optimizer_steps(n_examples: int, cfg: TrainConfig, world_size: int = 1) -> int:
    if cfg.max_steps:
        return int(cfg.max_steps)
    return max(1, math.ceil(cfg.epochs * n_examples / sequences_per_step(cfg, world_size)))


def check_loss_impl(cfg: TrainConfig) -> None:
    """``train.loss_impl=liger`` or ``train.liger_layers`` where Liger cannot run: a ValueError
    before any model loads."""
    from limo_exp.training import loss

    if cfg.loss_impl == "liger" and loss.liger_missing():
        raise ValueError(f"train.loss_impl=liger: {loss.liger_missing()}; use auto or target_only")
    if cfg.liger_layers is True and loss.liger_missing():
        raise ValueError(f"train.liger_layers=true: {loss.liger_missing()}")


def use_loss(model, requested: str) -> str:
    """Install the target-only loss on ``model`` (its base model under LoRA) and return the loss
    actually used: ``liger`` (Liger's fused kernel at the target positions) for ``liger``, and
    for ``auto`` on CUDA where liger-kernel is installed; ``target_only`` (chunked, plain torch)
    for ``target_only`` and otherwise under ``auto``; ``hf`` (full logits) for ``hf`` and for
    ``auto`` on an architecture the target-only loss does not know."""
    from limo_exp.training import loss

    base = _base(model)
    if requested == "hf" or (requested == "auto" and not loss.supports(base)):
        return "hf"
    liger = requested == "liger" or (requested == "auto" and not loss.liger_missing())
    loss.install(base, kernel="liger" if liger else "torch")
    return "liger" if liger else "target_only"


def liger_layers_on(cfg: TrainConfig) -> tuple[bool, str]:
    """``train.liger_layers``: true, false, or ``auto`` (on where Liger's kernels run on CUDA), and why."""
    from limo_exp.training.loss import liger_missing

    if cfg.liger_layers == "auto":
        import torch

        if not torch.cuda.is_available():
            return False, "auto: no CUDA device"
        why = liger_missing()
        return (False, f"auto: {why}") if why else (True, "auto: CUDA and liger-kernel")
    return bool(cfg.liger_layers), "as configured"


def setup(model, data: list[Tokenized], cfg: TrainConfig, accelerator) -> Prepared:
    """Checkpointing, the loss, Liger's layers, the optimizer and schedule, Accelerate's
    wrapping, in that order."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from limo_exp.training.attention import describe
    from limo_exp.training.optim import make_optimizer

    world = accelerator.num_processes
    budget, accum = cfg.max_tokens_per_micro_batch, accumulation_steps(cfg, world)
    steps = n_optimizer_steps(len(data), cfg, world)
    if checkpointing(cfg):
        model.gradient_checkpointing_enable()
        skip_checkpointing(model, cfg.checkpoint_skip_layers)
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if low and cfg.optimizer == "adamw":  # AdamW on 16-bit weights rounds small updates away
        raise ValueError(
            f"trainable weights in {', '.join(low)} with train.optimizer=adamw lose most updates at "
            f"lr={cfg.lr}: load them in train.master_dtype=float32, or use train.optimizer=adamw_kahan"
        )
    loss_impl = use_loss(model, cfg.loss_impl)
    liger, liger_why = liger_layers_on(cfg)
    if liger:  # Liger's RMSNorm / SwiGLU / RoPE kernels (CUDA)
        from limo_exp.training.loss import liger_layers

        liger_layers(_base(model))
    attn, attn_why = describe(_base(model))
    log.info("attention: %s (%s); Liger's layer kernels: %s (%s)", attn, attn_why, liger, liger_why)
    # Accelerate marks the last micro-batch of each step as the one that syncs gradients (DDP
    # all-reduce, DeepSpeed's engine step) and divides every loss by grad_accum.
    accelerator.gradient_accumulation_steps = 1 if budget else accum  # budget: rows vary, synced by hand
    accelerator.step = 0
    ds = deepspeed_config(accelerator, cfg)
    if accelerator.device.type == "cuda" and ds is None and not sharded(accelerator):
        model = model.to(accelerator.device)  # before the optimizer: fused AdamW's state on the GPU
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    model, opt = accelerator.prepare(model, opt)
    if accelerator.gradient_accumulation_steps != (1 if budget else accum):
        raise ValueError(
            f"train.grad_accum={accum} but the Accelerate/DeepSpeed config says "
            f"{accelerator.gradient_accumulation_steps}: remove gradient_accumulation_steps from the accelerate config"
        )
    model.train()
    accelerator.register_for_checkpointing(sched)
    return Prepared(model, opt, sched, loss_impl, attn, attn_why, liger)


def resume(accelerator, state_dir, run_key: str, result, steps: int, log_metrics, per_step: int = 0) -> float:
    """Continue from the newest state in ``state_dir`` (model, optimizer, scheduler, RNG) into
    ``result``; returns the seconds earlier attempts spent (0 for a fresh start). A state this
    launch cannot load (other processes, another layout, other steps: ``checkpoints.check_launch``)
    is a StateMismatch before anything is loaded."""
    from limo_exp.training import checkpoints

    found = checkpoints.latest(state_dir, run_key)
    if found is None:
        return 0.0
    path, done = found
    world, layout = accelerator.num_processes, checkpoints.layout(accelerator)
    checkpoints.check_launch(path, done, world, layout, per_step)
    if done.world and done.world != world:  # torch's distributed checkpoint reshards it
        log.warning("%s was saved by %d processes, resumed on %d (%s)", path, done.world, world, layout)
    accelerator.load_state(str(path))
    result.losses, result.steps = list(done.losses), done.step
    result.target_tokens, result.seen_tokens, result.real_tokens = (
        done.target_tokens,
        done.seen_tokens,
        done.real_tokens,
    )
    result.resumed_from = str(path)
    log.info("resuming from %s (step %d of %d)", path, done.step, steps)
    for i, old in enumerate(done.losses):
        log_metrics({"train/loss": old}, i + 1)
    return done.seconds


def deepspeed_config(accelerator, cfg: TrainConfig):
    """Under DeepSpeed, write into its config what the recipe says, before ``accelerator.prepare``
    builds the engine (Accelerate fills only the keys left ``auto``), and return the plugin (None
    without DeepSpeed): the micro-batch size (no dataloader is prepared); ``train.max_grad_norm``
    as ``gradient_clipping`` (DeepSpeed clips inside its own step, where the loop's clipping does
    nothing, and Accelerate would fill in 1.0 whatever the recipe says; 0 or null: no clipping);
    and, where the optimizer states are offloaded, leave for DeepSpeed to step limo-exp's own
    optimizer on the CPU (``zero_force_ds_cpu_optimizer``: it otherwise refuses any optimizer but
    its CPU Adam). ValueError for what DeepSpeed cannot run."""
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is None:
        return None
    if cfg.max_tokens_per_micro_batch:
        raise ValueError("train.max_tokens_per_micro_batch is not supported with DeepSpeed: use FSDP or DDP")
    conf = ds.deepspeed_config
    conf["train_micro_batch_size_per_gpu"] = cfg.batch_size
    conf["gradient_clipping"] = float(cfg.max_grad_norm or 0.0)  # the recipe's, over any file's
    offload = conf.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") or "none"
    if offload != "none":
        conf["zero_force_ds_cpu_optimizer"] = False
    return ds


def make_accelerator(gpu: bool):
    """The Accelerator of the topology ``accelerate launch --config_file conf/accelerate/<name>.yaml``
    put in the environment, with the recipe's numerics on every one: fp32 master weights and, on
    a GPU, bf16 autocast compute (``mixed_precision`` in the accelerate config is not read).

    Under FSDP the fp32 weights are sharded and gathered, and the gradients reduced, in fp32 (an
    FSDP2 MixedPrecisionPolicy without casts: Accelerate's bf16 policy would compute with bf16
    weights and activations, reduce gradients in bf16 and round the loss to bf16). The bf16
    compute is autocast's, as on one process; under FSDP Accelerate does not wrap the forward in
    it, the training loop does (``accelerator.autocast()``). On a CPU, where Accelerate quietly
    trains with DDP over gloo instead, FSDP is turned on by hand: FSDP2 runs over gloo, so a CPU
    run shards as a GPU run does (tests/test_fsdp.py). ``fsdp_offload_params`` is FSDP2's CPU
    offload, in pinned host memory on a GPU and plain memory on a CPU (nothing to pin for).

    Under DeepSpeed on a CPU, the Accelerator is not a ``cpu=True`` one (Accelerate then ignores
    DeepSpeed and trains each process alone): DeepSpeed's CPU accelerator, over gloo."""
    import os

    from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState
    from accelerate.utils import DistributedType, InitProcessGroupKwargs, str_to_bool

    def on(name: str) -> bool:  # a launcher's true/false variable
        return bool(str_to_bool(os.environ.get(name, "false")))

    if on("ACCELERATE_USE_DEEPSPEED") and not gpu:
        return Accelerator(mixed_precision="no", kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    fsdp = None
    if on("ACCELERATE_USE_FSDP"):
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

        offload = {"cpu_offload": CPUOffloadPolicy(pin_memory=gpu)} if on("FSDP_OFFLOAD_PARAMS") else {}
        # the rest of the plugin (version, wrapping, resharding, loading) from the launcher's FSDP_* variables
        fsdp = FullyShardedDataParallelPlugin(mixed_precision_policy=MixedPrecisionPolicy(), **offload)
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no", fsdp_plugin=fsdp)
    if fsdp is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        # what Accelerate's state does for FSDP on GPUs, in both of its shared states (a later
        # AcceleratorState() re-reads the partial one)
        accelerator.state.fsdp_plugin = fsdp
        accelerator.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return accelerator
