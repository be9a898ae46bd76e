"""Run by tests/test_liger_interpreter.py under torchrun (2 CPU processes, gloo): train the tiny
model with ``train.loss_impl=liger``, Liger's kernels under Triton's CPU interpreter, every step
under the host-read check (``syncs.checking("count")``), and write rank 0's losses and reads.

    TRITON_INTERPRET=1 torchrun --nproc_per_node 2 tests/liger_worker.py MODEL_DIR OUT.json '{...}'
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))


def main(model_dir: str, out: Path, train_kw: dict) -> None:
    import triton_interpret

    triton_interpret.apply()  # before Liger's kernels are first used
    import fsdp_worker
    import torch
    from accelerate import Accelerator

    from limo_exp.config import TrainConfig
    from limo_exp.training import attention, syncs  # noqa: F401  (attention: limo_varlen registered)
    from limo_exp.training.loop import train
    from limo_exp.training.models import load

    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model, tok = load(model_dir, attn="limo_varlen")
    cfg = TrainConfig(lr=1e-3, max_steps=2, instruction="Reason.", loss_impl="liger", **train_kw)
    with syncs.checking("count") as found:
        res = train(model, tok, fsdp_worker.examples(), cfg, acc)
    if acc.is_main_process:
        reads = [r for step in found for r in step.reads]
        report = {
            "world": acc.num_processes,
            "losses": res.losses,
            "loss_impl": res.loss_impl,
            "reads": reads,
        }
        out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
