"""Shell completion through the dispatcher: ``eval "$(limo-exp run -sc install=bash)"`` registers
Hydra's completion for ``limo-exp``, whose queries (``limo-exp -sc query=bash``) complete the command
word first, then the command's overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from limo_exp.cli import main


def query(line: str, capsys, monkeypatch, shell: str = "bash") -> list[str]:
    monkeypatch.setenv("COMP_LINE", line)
    main(["-sc", f"query={shell}"])
    return capsys.readouterr().out.split()


def test_the_command_word_completes(capsys, monkeypatch):
    assert query("limo-exp ", capsys, monkeypatch) == [
        "run",
        "plan",
        "curate",
        "distill",
        "eval",
        "report",
        "compare",
        "regrade",
        "reproduce",
        "diff",
    ]
    assert query("limo-exp r", capsys, monkeypatch) == ["run", "report", "regrade", "reproduce"]
    line = "limo-exp reproduce 3f8e tracking.u"  # the run id is no override: run's overrides complete
    assert "tracking.uri=" in query(line, capsys, monkeypatch)
    assert query("limo-exp cu", capsys, monkeypatch, "fish") == ["curate"]


def test_overrides_complete_after_the_command(capsys, monkeypatch):
    assert "model=" in query("limo-exp run mod", capsys, monkeypatch)
    models = query("limo-exp eval model=", capsys, monkeypatch)
    assert {"model=tiny_random", "model=hub", "model=smollm2_135m_instruct"} <= set(models)
    assert "accelerate=fsdp" in query("limo-exp run accelerate=fs", capsys, monkeypatch)
    assert "sweep=less_is_more" in query("limo-exp plan sweep=less", capsys, monkeypatch)  # run's overrides


def test_install_registers_limo_exp(capsys):
    main(["run", "-sc", "install=bash"])
    script = capsys.readouterr().out
    assert script.rstrip().endswith("complete -o nospace -o default -F hydra_bash_completion limo-exp")
    assert "$helper -sc query=bash" in script


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_bash_completes_through_the_installed_script():
    """What a user's shell does: eval the script, press tab after ``limo-exp run model=tiny``."""
    script = """
        eval "$(limo-exp run -sc install=bash)"
        COMP_LINE="limo-exp run model=tiny"; COMP_POINT=${#COMP_LINE}; COMP_CWORD=2
        hydra_bash_completion; echo "${COMPREPLY[@]}"
    """
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["model=tiny_random"], out.stderr
