"""Run by tests/test_offload.py and tests/test_ram_efficient_load.py under ``accelerate launch
--config_file conf/accelerate/<preset>.yaml --num_processes 2``, on CPU processes over gloo, with
``limo-exp run``'s Accelerator (``recipe.make_accelerator``) and loader (``models.load``). Each
rank writes ``OUT_DIR/rank<r>.json``.

- ``"mode": "train"``: train the model (``loop.train``) and write the losses and what was
  offloaded: FSDP2's offload policy on every sharded weight, or DeepSpeed's config and engine.
- ``"mode": "load"``: load the model and shard it (``accelerator.prepare``), and write what this
  rank held in host memory on the way: the bytes of parameters materialised on the CPU at load,
  of its shard after ``prepare``, and its peak resident memory over both, above what it held
  before (``/proc/self/status``' VmHWM, reset first through ``/proc/self/clear_refs``).

    python tests/offload_worker.py MODEL_DIR OUT_DIR '{"mode": "train", "train": {...}}'
"""

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 600  # two ranks, a few steps: ~30 s alone, minutes on a busy machine


def launch(preset: str, model_dir: Path, out_dir: Path, spec: dict, port: int) -> dict[int, dict]:
    """This file on two processes under ``accelerate launch --config_file conf/accelerate/<preset>.yaml``
    (a process group of its own, killed whole past LIMIT_S); returns each rank's report. glibc is
    told to hand large freed blocks back at once (a fixed mmap threshold), so that resident memory
    is what a rank holds, not what its allocator kept; DeepSpeed finds the shared-memory op it
    built once per venv (make test-deepspeed)."""
    import services

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [str(model_dir), str(out_dir), json.dumps(spec)]
    yaml = REPO / f"conf/accelerate/{preset}.yaml"
    services.two_processes(yaml, Path(__file__), args, port, LIMIT_S, {"MALLOC_MMAP_THRESHOLD_": "131072"})
    return {r: json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)}


def memory_kib() -> dict[str, int]:
    """This process's resident memory now (VmRSS) and its peak since the last reset (VmHWM), KiB."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", text).group(1)) for key in ("VmRSS", "VmHWM")}


def host_bytes(model) -> dict[str, int]:
    """Bytes of the model's parameters by where they are: ``cpu`` (materialised), ``meta`` (shape
    only), ``zero3`` (a ZeRO-3 rank's partitions, in ``ds_tensor``; the parameter itself is empty)."""
    from torch.distributed.tensor import DTensor

    found = {"cpu": 0, "meta": 0, "zero3": 0}
    for p in model.parameters():
        local = p.to_local() if isinstance(p, DTensor) else p
        found[local.device.type] = found.get(local.device.type, 0) + local.numel() * local.element_size()
        if hasattr(p, "ds_tensor"):
            found["zero3"] += p.ds_tensor.numel() * p.ds_tensor.element_size()
    return found


def checksum(model) -> float:
    """The sum of every value this rank holds of the model's weights (its shard or partition)."""
    from torch.distributed.tensor import DTensor

    total = 0.0
    for p in model.parameters():
        local = p.ds_tensor if hasattr(p, "ds_tensor") else p.to_local() if isinstance(p, DTensor) else p
        total += local.detach().double().sum().item()
    return total


def offloaded(acc, model) -> dict:
    """What the topology offloads, read from the prepared objects themselves."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.DEEPSPEED:
        conf = acc.state.deepspeed_plugin.deepspeed_config
        zero = conf["zero_optimization"]
        return {
            "optimizer_device": zero["offload_optimizer"]["device"],
            "param_device": zero["offload_param"]["device"],
            "engine_cpu_offload": bool(model.zero_cpu_offload()),
            "gradient_clipping": model.gradient_clipping(),
            "force_ds_cpu_optimizer": conf.get("zero_force_ds_cpu_optimizer", True),
        }
    from torch.distributed.fsdp import FSDPModule

    policies = set()
    for module in model.modules():
        if isinstance(module, FSDPModule):
            group = module._get_fsdp_state()._fsdp_param_group
            policies |= {(p.offload_to_cpu, p.pin_memory) for p in (group.fsdp_params if group else [])}
    return {"policy": repr(acc.state.fsdp_plugin.cpu_offload), "offload_pin": sorted(policies)}


def main(model_dir: str, out_dir: Path, kw: dict) -> None:
    import torch
    from accelerate.utils import DistributedType

    sys.path.insert(0, str(Path(__file__).parent))
    import fsdp_worker

    from limo_exp.config import TrainConfig
    from limo_exp.training.loop import train
    from limo_exp.training.models import empty_weights, load, load_tokenizer, n_parameters
    from limo_exp.training.recipe import deepspeed_config, make_accelerator

    acc = make_accelerator(gpu=False)
    torch.manual_seed(0)
    found = {"world": acc.num_processes, "distributed_type": str(acc.distributed_type)}
    cfg = TrainConfig(lr=1e-3, instruction="Reason.", **kw.get("train", {}))
    if kw["mode"] == "load":
        # What loading imports, reads and caches besides the weights, before measuring: the
        # tokenizer, and the model built once without its weights (modeling code, config, the
        # generation config). Unwarmed, rank 1's peak on CI was 17.6 MB of that (code and
        # config); a copy of the weights is 163 MB in fp32.
        load_tokenizer(model_dir)
        import torch.distributed.fsdp  # noqa: F401
        import transformers.models.llama.modeling_llama  # noqa: F401

        if acc.distributed_type != DistributedType.DEEPSPEED:  # ZeRO-3 partitions what is built
            del_me = empty_weights(model_dir, trust_remote_code=False, revision=None, dtype=torch.float32)
            del del_me
        before = memory_kib()["VmRSS"]
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here
        model, _ = load(model_dir)
        found["at_load"] = host_bytes(model)
        found["load_peak"] = (memory_kib()["VmHWM"] - before) * 1024
        found["n_parameters"] = [n_parameters(model), sum(p.numel() for p in model.parameters())]
        deepspeed_config(acc, cfg)  # DeepSpeed's micro-batch size, as training sets it
        model, _ = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
        found["prepare_peak"] = (memory_kib()["VmHWM"] - before) * 1024  # load and prepare
        found["after_prepare"] = host_bytes(model)
        found["checksum"] = checksum(model)
    else:
        model, tok = load(model_dir)
        res = train(model, tok, fsdp_worker.examples(), cfg, acc)
        found |= {"losses": res.losses, "steps": res.steps, "offload": offloaded(acc, res.model)}
    (out_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
