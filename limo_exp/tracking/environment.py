"""The environment a run ran in, kept out of its run key: tags (platform, CPU, Python, seven
package versions, the GPUs and on CUDA the driver, CUDA, cuDNN and NCCL versions, the git commit)
and the artifact ``environment.txt`` (every installed distribution, ``name==version``), which
``limo-exp reproduce`` and ``limo-exp diff`` read back."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path

from limo_exp.tracking.protocol import NullTracker


def git_info(path: Path | None = None) -> dict[str, str]:
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
        return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}


def environment_tags() -> dict[str, str]:
    """The environment a run ran in, as tags (kept out of the run key): platform, CPU, Python, seven
    package versions, the GPUs and, on CUDA, the driver, CUDA, cuDNN and NCCL versions
    (``cuda_environment``), the git commit. Every installed distribution: ``log_environment``."""
    from importlib.metadata import PackageNotFoundError, version

    tags = {"hardware.platform": platform.platform(), "hardware.cpus": str(os.cpu_count())}
    tags |= {"hardware.cpu_model": cpu_model(), "python.version": platform.python_version()}
    tags["python.implementation"] = platform.python_implementation()
    for pkg in ("torch", "transformers", "accelerate", "lm-eval", "math-verify", "mlflow", "limo-exp"):
        try:
            tags[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            tags[f"version.{pkg}"] = "absent"
    with contextlib.suppress(ImportError):
        tags |= {"hardware.gpus": "none", "hardware.gpu_count": "0"} | cuda_environment()
    return tags | git_info()


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or "unknown"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cuda_environment() -> dict[str, str]:
    """On CUDA: the GPUs (names, count), the driver, and the CUDA runtime, cuDNN and NCCL versions
    torch runs with; {} without a GPU. Without a GPU driver on the machine (and torch not yet
    imported) torch is not imported just to hear it (seconds: ``limo-exp reproduce --check``)."""
    import shutil
    import sys

    drivers = ("/proc/driver/nvidia/version", "/dev/kfd")  # NVIDIA's kernel driver, ROCm's
    if (
        "torch" not in sys.modules
        and not any(map(os.path.exists, drivers))
        and not shutil.which("nvidia-smi")
    ):
        return {}
    import torch

    if not torch.cuda.is_available():
        return {}
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    tags = {"hardware.gpus": ", ".join(names), "hardware.gpu_count": str(len(names))}
    tags["cuda.runtime"] = str(torch.version.cuda or "unknown")
    tags["cuda.cudnn"] = str(torch.backends.cudnn.version() or "none")
    try:
        nccl = torch.cuda.nccl.version()
        tags["cuda.nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    except (AttributeError, RuntimeError):
        tags["cuda.nccl"] = "none"
    return tags | {"cuda.driver": cuda_driver()}


def cuda_driver() -> str:
    """The NVIDIA driver's version: NVML when nvidia-ml-py is installed, else ``nvidia-smi``."""
    try:
        import pynvml

        pynvml.nvmlInit()
        found = pynvml.nvmlSystemGetDriverVersion()
        return found.decode() if isinstance(found, bytes) else str(found)
    except Exception:  # no pynvml, or NVML not loadable: ask nvidia-smi
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return out.stdout.split("\n")[0].strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


ENVIRONMENT_FILE = "environment.txt"  # a run's artifact: every installed distribution, name==version


def installed_distributions() -> dict[str, str]:
    """Every distribution installed in this interpreter -> its version, by normalised name (PEP 503)."""
    import re
    from importlib.metadata import distributions

    found = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
    return dict(sorted(found.items()))


def log_environment(tracker: NullTracker, folder: str | Path) -> None:
    """Every installed distribution as ``name==version`` lines: ``<folder>/environment.txt``,
    logged as the run's artifact ``environment.txt`` (pip's requirement format)."""
    if tracker.run_id is None:
        return
    path = Path(folder) / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}=={v}\n" for k, v in installed_distributions().items()))
    tracker.log_artifact(path)
