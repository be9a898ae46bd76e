"""``evaluate_to_dir`` in a fresh process without the launcher's distributed environment.

After multi-process training, rank 0 evaluates alone; a process that still carries the
training's process group and Accelerate state would make lm-eval (or vLLM's own workers)
believe it is one rank of many. The request and the result travel as JSON files in the
evaluation's output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from limo_exp.config import EvalConfig
from limo_exp.evaluation.evaluate import EvalResult, evaluate_to_dir

_DIST_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_USE_FSDP",
)


def evaluate_isolated(model_path: str, suite: EvalConfig, output_dir: str | Path, **options) -> EvalResult:
    """Same arguments and result as ``evaluate_to_dir`` (samples and raw results stay on disk)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    request = output_dir / "request.json"
    request.write_text(json.dumps({"model_path": model_path, "eval": suite.to_dict(), "options": options}))
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    subprocess.run([sys.executable, "-m", "limo_exp.evaluation.isolated", str(request)], env=env, check=True)
    out = json.loads((output_dir / "output.json").read_text())
    return EvalResult(out["metrics"], {}, out["settings"], artifacts=[Path(p) for p in out["artifacts"]])


def _worker(request: Path) -> None:
    req = json.loads(request.read_text())
    suite = EvalConfig.from_dict(req["eval"], "eval")
    ev = evaluate_to_dir(req["model_path"], suite, request.parent, **req["options"])
    out = {"metrics": ev.metrics, "settings": ev.settings, "artifacts": [str(p) for p in ev.artifacts]}
    (request.parent / "output.json").write_text(json.dumps(out))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
