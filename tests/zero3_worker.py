"""Run by tests/test_zero3.py: train the tiny model under DeepSpeed ZeRO-3 on CPU processes (gloo)
and write what rank 0 saw.

Launched as ``accelerate launch --config_file conf/accelerate/deepspeed_zero3.yaml --num_processes 2
--mixed_precision no`` (DeepSpeed's CPU accelerator; without oneCCL it talks over gloo). The
Accelerator is built here as ``training.recipe.make_accelerator`` builds it on a CPU under DeepSpeed
(not ``cpu=True``, which makes Accelerate ignore DeepSpeed): gloo's process group. The rest is ``limo-exp run``'s path: ``load``, then
``loop.train`` (the target-only loss installed on the model, ``accelerator.prepare`` building the
DeepSpeed engine) and ``loop.save`` (the weights gathered from the ranks).

    python tests/zero3_worker.py MODEL_DIR OUT.json '{"train": {...}}'
"""

import json
import sys
from pathlib import Path


def main(model_dir: str, out: Path, kw: dict) -> None:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from limo_exp.config import TrainConfig
    from limo_exp.training import loss
    from limo_exp.training.loop import save, train
    from limo_exp.training.models import load

    sys.path.insert(0, str(Path(__file__).parent))
    import fsdp_worker

    acc = Accelerator(mixed_precision="no", kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    torch.manual_seed(0)
    model, tok = load(model_dir)  # under zero.Init (zero3_init_flag): each rank keeps its partition
    head = model.get_output_embeddings().weight
    at_load = {"ds_id": hasattr(head, "ds_id"), "local_shape": list(head.shape)}

    seen = set()  # the output weight as the loss reads it
    plain = loss.target_cross_entropy

    def spy(hidden, weight, labels, **kwargs):
        seen.add(tuple(weight.shape))
        return plain(hidden, weight, labels, **kwargs)

    loss.target_cross_entropy = spy
    cfg = TrainConfig(lr=1e-3, instruction="Reason.", **kw["train"])
    res = train(model, tok, fsdp_worker.examples(), cfg, acc)
    save(res.model, tok, str(out.parent / "zero3_checkpoint"), acc)
    if acc.is_main_process:
        found = {
            "world": acc.num_processes,
            "distributed_type": str(acc.distributed_type),
            "zero_stage": acc.state.deepspeed_plugin.zero_stage,
            "loss_impl": res.loss_impl,
            "losses": res.losses,
            "steps": res.steps,
            "at_load": at_load,
            "weight_seen": sorted(seen),
        }
        out.write_text(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
