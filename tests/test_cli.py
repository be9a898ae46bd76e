from __future__ import annotations

import subprocess
import sys

from limo_exp.cli import checkpoint_overrides


def test_checkpoint_path_becomes_local_path_model(tiny_model):
    args = checkpoint_overrides([f"model={tiny_model}", "eval=smoke"])
    assert args == ["model=local_path", f"model.path={tiny_model.resolve()}", "eval=smoke"]
    assert checkpoint_overrides(["model=tiny_random"]) == ["model=tiny_random"]  # a config name stays


def test_unknown_command_lists_the_valid_ones():
    proc = subprocess.run([sys.executable, "-m", "limo_exp", "train"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "valid: run, curate, eval, report" in proc.stderr


def test_unknown_model_option_lists_the_valid_ones(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "limo_exp", "run", "model=gpt5", f"paths.output_root={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Could not find 'model/gpt5'" in proc.stderr and "smollm2_135m_instruct" in proc.stderr
