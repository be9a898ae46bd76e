"""Paper tables in LIMO's layout: rows = models / configurations (a setting at one N, seeds
together), columns = benchmarks + average, every accuracy with its interval as ±, the best of a
column in bold only when the paired test says it beats the runner-up. Markdown (with the MLflow
run ids of every row) and LaTeX (booktabs). Published numbers can be added as "reported" rows
from ``published.yaml``; they are marked as not measured here and never compete for bold.
"""

from __future__ import annotations

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

    @property
    def reported(self) -> bool:
        return self.point is None


def measured_rows(study: Study, opts) -> list[Row]:
    """One row per point of the study (baselines first), with intervals on the problems all of a
    point's runs evaluated; the average only over rows that have every task."""
    tasks = study.tasks()
    rows = []
    for pt in study.points():
        cells, arrays = {}, []
        for task in tasks:
            a, items = study.array(pt.run_ids, task)
            if items:
                cells[task] = stats.mean_interval(a, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
                arrays.append(a)
        avg = None
        if arrays and len(arrays) == len(tasks) and len(tasks) > 1:
            avg = stats.average_interval(arrays, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
        label = f"{pt.label()} (untrained)" if pt.kind == "eval" else pt.label()
        rows.append(Row(label, pt.n, cells, avg, pt.run_ids, pt))
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


def _pct(iv: stats.Interval | None, reported: bool = False) -> str:
    if iv is None:
        return "-"
    return f"{100 * iv.mean:.1f}" if reported else f"{100 * iv.mean:.1f} ± {100 * iv.pm():.1f}"


def short(task: str) -> str:
    return task.removeprefix("limo_")


def markdown(rows: list[Row], tasks: list[str], caption: str) -> str:
    avg = any(r.average for r in rows)
    head = (
        ["model / configuration", "N"] + [short(t) for t in tasks] + (["average"] if avg else []) + ["runs"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for t in tasks:
            s = _pct(r.cells.get(t), r.reported)
            cells.append(f"**{s}**" if t in r.bold else s)
        if avg:
            cells.append(_pct(r.average))
        n = "-" if r.n is None else str(r.n)
        ids = r.source if r.reported else ", ".join(r.run_ids)
        lines.append("| " + " | ".join([r.label, n] + cells + [ids]) + " |")
    return "\n".join(lines) + f"\n\n{caption}\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_TEX |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def latex(rows: list[Row], tasks: list[str], caption: str, label: str) -> str:
    avg = any(r.average for r in rows)
    ncol = 2 + len(tasks) + avg
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (ncol - 1) + "}",
        r"\toprule",
        " & ".join(
            ["Model / configuration", "$N$"]
            + [tex_escape(short(t)) for t in tasks]
            + (["Avg."] if avg else [])
        )
        + r" \\",
        r"\midrule",
    ]
    measured, reported = [r for r in rows if not r.reported], [r for r in rows if r.reported]
    for group in (measured, reported):
        if group is reported and reported:
            out.append(r"\midrule")
        for r in group:
            cells = []
            for t in tasks:
                iv = r.cells.get(t)
                if iv is None:
                    cells.append("--")
                    continue
                s = (
                    f"{100 * iv.mean:.1f}"
                    if r.reported
                    else f"{100 * iv.mean:.1f} $\\pm$ {100 * iv.pm():.1f}"
                )
                cells.append(f"\\textbf{{{s}}}" if t in r.bold else s)
            if avg:
                cells.append(
                    "--"
                    if r.average is None
                    else f"{100 * r.average.mean:.1f} $\\pm$ {100 * r.average.pm():.1f}"
                )
            n = "--" if r.n is None else str(r.n)
            name = tex_escape(r.label) + (r"$^\dagger$" if r.reported else "")
            out.append(" & ".join([name, n] + cells) + r" \\")
    note = r" $^\dagger$Published numbers, not measured by this study." if reported else ""
    out += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + tex_escape(caption) + note + "}",
        r"\label{" + label + "}",
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"
