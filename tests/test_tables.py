"""Paper tables: escaping, the shared cell formatter, labels, header and caption of a table shaped
like the demo's (SmolLM2-135M-Instruct untrained and fine-tuned on N = 4, 8, 32 answer-only or
short solutions, 64 arithmetic problems); slow: it compiles under pdflatex with and without T1."""

from __future__ import annotations

import os
import shutil
import subprocess

import pandas as pd
import pytest

from limo_exp.analysis.labels import conf_labels, logged_labels
from limo_exp.analysis.stats import Interval
from limo_exp.analysis.study import Point
from limo_exp.analysis.tables import Row, caption, cell, latex, markdown, share, tex_escape
from limo_exp.config import ReportConfig

OPTS = ReportConfig()
TASK = "limo_arithmetic"
SPECIAL = "a&b%c$d#e_f{g}h~i^j\\k<l>m|n"  # every character LaTeX treats specially


def demo_rows(special: bool = False) -> list[Row]:
    base = Point(("smollm2_135m_instruct",), 0, ("r0",), "eval", ("SmolLM2-135M-Instruct",))
    rows = [Row(f"{base.label()} (untrained)", 0, {TASK: Interval(0.0, 0.0, 0.0)}, None, ("r0",), base)]
    rows[0].answered, rows[0].problems = 0.0, {TASK: 64}
    for tier, label, accs in (
        ("answer_only", "answer only", (0.25, 0.5, 0.75)),
        ("short", "short CoT", (0.5,) * 3),
    ):
        for n, acc in zip((4, 8, 32), accs):
            pt = Point((tier, tier), n, (f"{tier}{n}",), "run", (label, label))
            iv = Interval(acc, acc - 0.1, acc + 0.12)
            rows.append(
                Row(pt.label(), n, {TASK: iv}, None, pt.run_ids, pt, answered=1.0, problems={TASK: 64})
            )
    rows[3].bold.add(TASK)  # answer only at N = 32
    if special:
        rows.append(Row(SPECIAL, None, {TASK: Interval(0.571, 0.571, 0.571)}, None, source="a paper"))
    return rows


def test_tex_escape_every_special_character():
    assert tex_escape(SPECIAL) == (
        r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
        r"\textless{}l\textgreater{}m\textbar{}n"
    )
    assert tex_escape("SmolLM2-135M-Instruct (untrained)") == "SmolLM2-135M-Instruct (untrained)"


def test_one_cell_formatter_for_markdown_and_latex():
    iv = Interval(0.683, 0.533, 0.833)
    assert cell(iv, tex=False) == "68.3 ± 15.0"
    assert cell(iv, tex=True) == r"68.3 $\pm$ 15.0"
    assert cell(iv, tex=False, bold=True) == "**68.3 ± 15.0**"
    assert cell(iv, tex=True, bold=True) == r"\textbf{68.3 $\pm$ 15.0}"
    assert cell(iv, tex=True, reported=True) == "68.3"
    assert (cell(None, tex=False), cell(None, tex=True)) == ("-", "--")
    assert (share(0.0, tex=False), share(None, tex=True)) == ("0.0", "--")
    md, tex = markdown(demo_rows(), [TASK], OPTS), latex(demo_rows(), [TASK], OPTS, "tab:demo")
    assert "| answer only | 32 | **75.0 ± 11.0** | 100.0 | answer_only32 |" in md
    assert r"answer only & 32 & \textbf{75.0 $\pm$ 11.0} & 100.0 \\" in tex


def test_demo_table_header_rows_and_caption():
    rows = demo_rows()
    md = markdown(rows, [TASK], OPTS, subject="SmolLM2-135M-Instruct").splitlines()
    assert md[0] == "| model / configuration | N | arithmetic (n=64) accuracy, % | answered, % | runs |"
    assert md[2] == "| SmolLM2-135M-Instruct (untrained) | 0 | 0.0 ± 0.0 | 0.0 | r0 |"
    assert md[-1] == (
        "Accuracy (%) of SmolLM2-135M-Instruct, untrained (N = 0) and fine-tuned on N examples (each row "
        "pools its seeds), on arithmetic (n=64 problems): the mean ± half the width of its 95% interval; "
        "answered: responses with an extractable final answer (%), mean over benchmarks. Method: 95% "
        "intervals: percentile bootstrap over problems (and over seeds and samples where a point has "
        "several), 2,000 resamples, seed 0; bold: best in its column and better than the runner-up under "
        "a paired test at p < 0.05."
    )
    tex = latex(rows, [TASK], OPTS, "tab:demo", subject="SmolLM2-135M-Instruct").splitlines()
    assert tex[3:9] == [
        r"\begin{tabular}{lrrr}",
        r"\toprule",
        r" &  & \multicolumn{1}{c}{accuracy, \%} &  \\",
        r"\cmidrule(lr){3-3}",
        r"Model / configuration & $N$ & arithmetic ($n=64$) & answered, \% \\",
        r"\midrule",
    ]
    cap = caption(rows, [TASK], OPTS, tex=True, subject="SmolLM2-135M-Instruct")
    assert cap.startswith(
        r"Accuracy (\%) of SmolLM2-135M-Instruct, untrained ($N = 0$) and fine-tuned on $N$ examples "
        r"(each row pools its seeds), on arithmetic ($n=64$ problems): the mean $\pm$ half the width of "
        r"its 95\% interval; answered: "
    )
    assert cap.endswith(r"better than the runner-up under a paired test at $p < 0.05$.")
    assert r"\caption{" + cap + "}" in tex


def test_special_characters_in_labels_and_keys():
    rows = demo_rows(special=True)
    assert "| a&b%c$d#e_f{g}h~i^j\\k<l>m\\|n | - | 57.1 | - | a paper |" in markdown(rows, [TASK], OPTS)
    tex = latex(rows, [TASK], OPTS, "tab:my study%")
    assert "\\label{tab:my-study-}" in tex
    assert tex_escape(SPECIAL) + "$^\\dagger$ & -- & 57.1 & -- \\\\" in tex


def test_rows_with_different_problem_counts_show_the_range():
    rows = demo_rows()
    rows[1].problems = {TASK: 40}
    assert "| arithmetic (n=40-64) accuracy, % |" in markdown(rows, [TASK], OPTS)
    assert r"arithmetic ($n=40$--$64$)" in latex(rows, [TASK], OPTS, "t")


def test_point_labels_and_id_fallback():
    assert Point(("answer_only", "answer_only"), 4, (), "run", ("answer only", "answer only")).label() == (
        "answer only"
    )
    assert Point(("best", "L4+"), 4, (), "run").label() == "best / L4+"  # no labels: the ids


def test_labels_from_conf_and_from_logged_params():
    labels = conf_labels()
    assert labels["smollm2_135m_instruct"] == "SmolLM2-135M-Instruct"
    assert labels["answer_only"] == "answer only" and labels["short"] == "short CoT"
    assert "local_path" not in labels and not any("${" in k for k in labels)  # hub: its name is the hub id
    frame = pd.DataFrame(
        {
            "model.name": ["m", "m", "old"],
            "model.label": ["M v1", "M v2", None],  # oldest first: the latest wins; "old" predates labels
            "quality.name": ["q", "q", "q"],
            "quality.label": ["None", "None", "None"],  # logged from label: null
        }
    )
    assert logged_labels(frame) == {"m": "M v2"}
    assert logged_labels(pd.DataFrame({"model.name": ["m"]})) == {}


# -- compiled ------------------------------------------------------------------------------------

TEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "poppler-utils")  # booktabs: recommended
TOOLS = ("pdflatex", "pdftotext", "pdftoppm")


def _tex_tools() -> None:
    """pdflatex and poppler, installed from Debian's packages when missing and running as root."""
    if all(shutil.which(t) for t in TOOLS):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(f"needs {', '.join(TOOLS)}: apt-get install {' '.join(TEX_PACKAGES)}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *TEX_PACKAGES]
    r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # a fresh container has no package lists yet
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode != 0 or not all(shutil.which(t) for t in TOOLS):
        pytest.skip(f"could not install {' '.join(TEX_PACKAGES)}: {r.stderr[-500:]}")


@pytest.mark.slow
@pytest.mark.parametrize("t1", [False, True], ids=["OT1", "T1"])
def test_demo_table_compiles_with_pdflatex(tmp_path, t1):
    """The demo-shaped table with a row named by every special character: it compiles, the PDF
    says "p < 0.05" (not OT1's "p ¡ 0.05" of a bare <) and keeps the label, and renders to PNG."""
    _tex_tools()
    table = latex(demo_rows(special=True), [TASK], OPTS, "tab:demo", subject="SmolLM2-135M-Instruct")
    fonts = "\\usepackage[T1]{fontenc}\n" if t1 else ""
    doc = "\\documentclass{article}\n" + fonts + "\\usepackage{booktabs}\n\\begin{document}\n"
    (tmp_path / "table.tex").write_text(doc + table + "\\end{document}\n")
    cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "table.tex"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = (tmp_path / "table.log").read_text(errors="replace")
    assert r.returncode == 0, log[-3000:]
    assert "Missing character" not in log and "Undefined control sequence" not in log
    text = subprocess.run(
        ["pdftotext", "-layout", "table.pdf", "-"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "p < 0.05" in text and "¡" not in text and "¿" not in text
    assert "SmolLM2-135M-Instruct (untrained)" in text and "accuracy, %" in text and "answered, %" in text
    assert "<l>m|n" in text and "a&b%c$d#e" in text  # the special row, escaped and printed
    subprocess.run(
        ["pdftoppm", "-png", "-r", "110", "-singlefile", "table.pdf", "table"], cwd=tmp_path, check=True
    )
    assert (tmp_path / "table.png").stat().st_size > 10_000
