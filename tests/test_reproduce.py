"""limo-exp reproduce and limo-exp diff (issue 35): the environment record every run logs, a run's
record read back, the check table, the rerun and its verdict, two runs' differences."""

from __future__ import annotations

import platform
from importlib.metadata import version

from limo_exp.tracking import environment


class Files:
    """A tracker that keeps what is logged as an artifact."""

    run_id = "r" * 32

    def __init__(self):
        self.artifacts = []

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append((path.name, path.read_text(), artifact_path))


def test_the_environment_record_on_a_cpu(tmp_path):
    tags = environment.environment_tags()
    assert tags["python.version"] == platform.python_version()
    assert tags["hardware.gpus"] == "none" and tags["hardware.gpu_count"] == "0"
    assert tags["version.torch"] == version("torch") and tags["git.commit"]
    assert not any(k.startswith("cuda.") for k in tags)  # no CUDA stack on a CPU
    t = Files()
    environment.log_environment(t, tmp_path)
    [(name, text, folder)] = t.artifacts
    assert name == "environment.txt" and folder is None
    lines = text.splitlines()
    assert f"torch=={version('torch')}" in lines and f"mlflow=={version('mlflow')}" in lines
    names = [x.split("==")[0] for x in lines]
    assert "limo-exp==0.1.0" in lines and names == sorted(names) and all("==" in x for x in lines)
    assert len(lines) == len(environment.installed_distributions()) > 50


def test_the_environment_record_on_cuda_faked(monkeypatch, tmp_path):
    """On CUDA: GPU names and count, driver (nvidia-smi when NVML is not importable), CUDA, cuDNN, NCCL."""
    import sys

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3), raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML not importable: nvidia-smi answers
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 570.124.06\necho 570.124.06\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    tags = environment.environment_tags()
    assert {k: v for k, v in tags.items() if k.startswith(("cuda.", "hardware.gpu"))} == {
        "hardware.gpus": "NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3",
        "hardware.gpu_count": "2",
        "cuda.runtime": "12.8",
        "cuda.cudnn": "91002",
        "cuda.nccl": "2.27.3",
        "cuda.driver": "570.124.06",
    }
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert environment.cuda_driver() == "unknown"
