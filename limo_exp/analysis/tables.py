"""Paper tables in LIMO's layout: rows = models / configurations (a setting at one N, seeds
together, named by their labels), columns = accuracy in % per benchmark (with its number of
problems) + average, and the share of answered responses where the evaluation tracks it; every
accuracy with its interval as ±, the best of a column in bold only when the paired test says it
beats the runner-up. Markdown (with the MLflow run ids of every row) and LaTeX (booktabs; compiles
with and without T1 fonts) share one cell formatter and one caption: what the table shows, then
the method. Published numbers can be added as "reported" rows from ``published.yaml``; they are
marked as not measured here and never compete for bold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from limo_exp.analysis import stats
from limo_exp.analysis.study import Point, Study

PUBLISHED = Path(__file__).with_name("published.yaml")


@dataclass
class Row:
    label: str
    n: int | None  # training examples; 0 for an untrained model, None for a reported row
    cells: dict[str, stats.Interval]  # task -> accuracy with its interval (reported: low = high)
    average: stats.Interval | None
    run_ids: tuple[str, ...] = ()
    point: Point | None = None
    source: str = ""  # reported rows: where the number was published
    bold: set[str] = field(default_factory=set)  # columns where this row is significantly best
    answered: float | None = None  # share of responses with an answer, mean over benchmarks; None: untracked
    problems: dict[str, int] = field(default_factory=dict)  # task -> problems behind the cell

    @property
    def reported(self) -> bool:
        return self.point is None


def measured_rows(study: Study, opts) -> list[Row]:
    """One row per point of the study (baselines first), with intervals on the problems all of a
    point's runs evaluated; the average only over rows that have every task."""
    tasks = study.tasks()
    rows = []
    for pt in study.points():
        cells, arrays, problems = {}, [], {}
        for task in tasks:
            a, items = study.array(pt.run_ids, task)
            if items:
                cells[task] = stats.mean_interval(a, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
                arrays.append(a)
                problems[task] = len(items)
        avg = None
        if arrays and len(arrays) == len(tasks) and len(tasks) > 1:
            avg = stats.average_interval(arrays, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
        shares = [a for t in tasks if (a := study.answered(pt.run_ids, t)) is not None]
        answered = sum(shares) / len(shares) if shares else None
        label = f"{pt.label()} (untrained)" if pt.kind == "eval" else pt.label()
        rows.append(Row(label, pt.n, cells, avg, pt.run_ids, pt, answered=answered, problems=problems))
    return rows


def mark_significant_best(study: Study, rows: list[Row], opts) -> dict[str, dict]:
    """Bold the best measured row of each column when a paired test against the second best is
    significant at ``opts.alpha``; return the test per column."""
    tests = {}
    for task in study.tasks():
        ranked = sorted(
            (r for r in rows if not r.reported and task in r.cells), key=lambda r: -r.cells[task].mean
        )
        if len(ranked) < 2:
            continue
        best, second = ranked[0], ranked[1]
        res = study.paired(best.run_ids, second.run_ids, task, opts)
        if res is None:
            continue
        tests[task] = res | {
            "best": best.label,
            "best_n": best.n,
            "second": second.label,
            "second_n": second.n,
        }
        if res["p_value"] < opts.alpha and res["diff"] > 0:
            best.bold.add(task)
    return tests


def reported_rows(keys: list[str], tasks: list[str], path: Path = PUBLISHED) -> list[Row]:
    """Published rows by key; a missing key or a key without any of the study's tasks is an
    error that lists what the file has."""
    import yaml

    known = yaml.safe_load(path.read_text()) or {}
    rows = []
    for key in keys:
        if key not in known:
            raise SystemExit(f"report.reported: no entry {key!r} in {path}; entries: {sorted(known)}")
        e = known[key]
        cells = {t: stats.Interval(v / 100, v / 100, v / 100) for t, v in e["scores"].items() if t in tasks}
        if not cells:
            raise SystemExit(
                f"report.reported: {key!r} in {path} has scores for {sorted(e['scores'])}, none of this "
                f"study's benchmarks {tasks}"
            )
        rows.append(Row(f"{e['label']} (reported)", None, cells, None, source=e["source"]))
    return rows


def short(task: str) -> str:
    return task.removeprefix("limo_")


# Every character LaTeX treats specially in text, as text-mode commands that exist in OT1 and T1
# alike (a bare < or > prints as ¡ or ¿ without T1 fonts).
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_TEX |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX |= {"<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def cell(iv: stats.Interval | None, *, tex: bool, reported: bool = False, bold: bool = False) -> str:
    """One accuracy in %, for Markdown or LaTeX: mean ± half its interval (a reported number:
    the mean alone), bold where it is the significant best, a dash where there is none."""
    if iv is None:
        return "--" if tex else "-"
    s = f"{100 * iv.mean:.1f}"
    if not reported:
        s += (r" $\pm$ " if tex else " ± ") + f"{100 * iv.pm():.1f}"
    if bold:
        s = rf"\textbf{{{s}}}" if tex else f"**{s}**"
    return s


def share(x: float | None, *, tex: bool) -> str:
    """A share in % (the answered column)."""
    return ("--" if tex else "-") if x is None else f"{100 * x:.1f}"


def problems(rows: list[Row], task: str, *, tex: bool) -> str:
    """``n=64``: the problems behind a benchmark's cells (a range where rows differ)."""
    counts = sorted({r.problems[task] for r in rows if task in r.problems})
    if not counts:
        return ""
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"$n={n}$".replace("-", "$--$") if tex else f"n={n}"


def column(rows: list[Row], task: str, *, tex: bool) -> str:
    """A benchmark's column header: ``arithmetic (n=64)``."""
    name = tex_escape(short(task)) if tex else short(task)
    n = problems(rows, task, tex=tex)
    return f"{name} ({n})" if n else name


def caption(rows: list[Row], tasks: list[str], opts, *, tex: bool, subject: str | None = None) -> str:
    """What the table shows (measure, unit, who, on what, what ± is), then the method."""
    t = tex_escape if tex else str

    def m(plain: str, math: str) -> str:  # math in LaTeX, plain text in Markdown
        return math if tex else plain

    measured = [r for r in rows if not r.reported]
    base = any(r.point is not None and r.point.kind == "eval" for r in measured)
    avg = any(r.average for r in rows)
    benches = ", ".join(
        column(rows, task, tex=tex).removesuffix(")") + " problems)"
        if problems(rows, task, tex=tex)
        else t(short(task))
        for task in tasks
    )
    who = t(subject or "each model and configuration")
    untrained = f", untrained ({m('N = 0', '$N = 0$')}) and" if base else ""
    parts = [
        t("Accuracy (%) of ")
        + who
        + untrained
        + f" fine-tuned on {m('N', '$N$')} examples "
        + t("(each row pools its seeds), on ")
        + benches
        + t(": the mean ")
        + m("±", r"$\pm$")
        + t(f" half the width of its {opts.level:.0%} interval"),
    ]
    if avg:
        parts.append(t("average: unweighted mean over benchmarks"))
    if any(r.answered is not None for r in rows):
        parts.append(t("answered: responses with an extractable final answer (%), mean over benchmarks"))
    method = t("Method: " + stats.method_note(opts.n_boot, opts.level, opts.seed))
    method += t("; bold: best in its column and better than the runner-up under a paired test at ")
    method += m(f"p < {opts.alpha}", f"$p < {opts.alpha}$")
    return "; ".join(parts) + ". " + method + "."


def markdown(rows: list[Row], tasks: list[str], opts, subject: str | None = None) -> str:
    avg = any(r.average for r in rows)
    answered = any(r.answered is not None for r in rows)
    head = ["model / configuration", "N"] + [f"{column(rows, t, tex=False)} accuracy, %" for t in tasks]
    head += (["average accuracy, %"] if avg else []) + (["answered, %"] if answered else []) + ["runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [cell(r.cells.get(t), tex=False, reported=r.reported, bold=t in r.bold) for t in tasks]
        cells += [cell(r.average, tex=False)] if avg else []
        cells += [share(r.answered, tex=False)] if answered else []
        n = "-" if r.n is None else str(r.n)
        ids = r.source if r.reported else ", ".join(r.run_ids)
        name = r.label.replace("|", "\\|")  # a | of a label would split the row
        lines.append("| " + " | ".join([name, n] + cells + [ids]) + " |")
    return "\n".join(lines) + f"\n\n{caption(rows, tasks, opts, tex=False, subject=subject)}\n"


def latex(rows: list[Row], tasks: list[str], opts, label: str, subject: str | None = None) -> str:
    """A booktabs table: a header row naming the measure and unit over the accuracy columns."""
    avg = any(r.average for r in rows)
    answered = any(r.answered is not None for r in rows)
    acc = len(tasks) + avg  # accuracy columns
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (1 + acc + answered) + "}",
        r"\toprule",
        " & ".join(["", "", rf"\multicolumn{{{acc}}}{{c}}{{accuracy, \%}}"] + ([""] if answered else []))
        + r" \\",
        rf"\cmidrule(lr){{3-{2 + acc}}}",
        " & ".join(
            ["Model / configuration", "$N$"]
            + [column(rows, t, tex=True) for t in tasks]
            + (["Avg."] if avg else [])
            + ([r"answered, \%"] if answered else [])
        )
        + r" \\",
        r"\midrule",
    ]
    measured, reported = [r for r in rows if not r.reported], [r for r in rows if r.reported]
    for group in (measured, reported):
        if group is reported and reported:
            out.append(r"\midrule")
        for r in group:
            cells = [cell(r.cells.get(t), tex=True, reported=r.reported, bold=t in r.bold) for t in tasks]
            cells += [cell(r.average, tex=True)] if avg else []
            cells += [share(r.answered, tex=True)] if answered else []
            n = "--" if r.n is None else str(r.n)
            name = tex_escape(r.label) + (r"$^\dagger$" if r.reported else "")
            out.append(" & ".join([name, n] + cells) + r" \\")
    note = r" $^\dagger$Published numbers, not measured by this study." if reported else ""
    out += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + caption(rows, tasks, opts, tex=True, subject=subject) + note + "}",
        r"\label{" + re.sub(r"[^\w:.-]", "-", label) + "}",  # a key, not text: no escapes
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"
