"""Run by tests/test_fsdp.py: train the tiny model under FSDP2 on CPU processes (gloo) and write
what rank 0 saw.

Launched as ``accelerate launch --config_file conf/accelerate/fsdp.yaml --num_processes 2`` (the
launcher puts the topology in the environment), or with ``"in_process": true`` as one plain
process that sets up, from the same file, what the launcher would: the way a script or a bench
runs FSDP without ``accelerate launch``. Either way the Accelerator is ``limo-exp run``'s own.

    python tests/fsdp_worker.py MODEL_DIR OUT.json '{"untie": true, "train": {...}}'
"""

import json
import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launcher_environment(fsdp_yaml: Path) -> dict[str, str]:
    """What ``accelerate launch --config_file fsdp_yaml --num_processes 1`` puts in the environment
    of its one process: a process group of one, and each ``fsdp_<key>`` as ``FSDP_<KEY>``."""
    import yaml

    conf = yaml.safe_load(fsdp_yaml.read_text())
    with socket.socket() as s:  # a free port for the one-process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "ACCELERATE_USE_FSDP": "true"}
    for key, value in conf["fsdp_config"].items():
        env["FSDP_" + key.removeprefix("fsdp_").upper()] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def examples():
    """Eight documents of uneven lengths (one to four copies of a synthetic solution)."""
    from limo_exp.data.records import Example
    from limo_exp.data.synthetic import make_pool

    pool = make_pool(8, seed=0)
    return [
        Example(r.id, r.problem, " ".join([r.solutions[1].text] * (1 + i % 4)), r.answer, "short")
        for i, r in enumerate(pool)
    ]


def untied(model):
    """The tiny model with an output layer of its own (as Qwen2.5-7B/32B), a copy of the embedding."""
    import torch

    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    return model


def main(model_dir: str, out: Path, kw: dict) -> None:
    if kw.get("in_process"):
        os.environ.update(launcher_environment(REPO / "conf/accelerate/fsdp.yaml"))
    import torch
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from limo_exp.config import TrainConfig
    from limo_exp.training import loss
    from limo_exp.training.loop import save, train
    from limo_exp.training.models import load
    from limo_exp.training.recipe import make_accelerator

    acc = make_accelerator(gpu=False)
    torch.manual_seed(0)
    model, tok = load(model_dir)  # rank 0 reads the weights, the others get them at prepare (fsdp.yaml)
    if kw.get("untie"):
        model = untied(model)

    seen = set()  # the output weight as the target-only loss reads it
    plain = loss.target_cross_entropy

    def spy(hidden, weight, labels, **kwargs):
        seen.add((type(weight).__name__, tuple(weight.shape)))
        return plain(hidden, weight, labels, **kwargs)

    loss.target_cross_entropy = spy
    cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", **kw["train"])
    res = train(model, tok, examples(), cfg, acc)
    params = {
        name: [type(p).__name__, p.numel(), p.to_local().numel() if isinstance(p, DTensor) else p.numel()]
        for name, p in res.model.named_parameters()
    }
    units = [name for name, m in res.model.named_modules() if isinstance(m, FSDPModule)]
    save(res.model, tok, str(out.parent / "fsdp_checkpoint"), acc)
    if acc.is_main_process:
        found = {
            "world": acc.num_processes,
            "distributed_type": str(acc.distributed_type),
            "losses": res.losses,
            "steps": res.steps,
            "params": params,
            "units": units,
            "weight_seen": sorted(seen),
        }
        out.write_text(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
