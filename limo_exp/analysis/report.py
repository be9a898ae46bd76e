"""``report``: a study's MLflow runs -> ``<results_dir>/<study>/``: report.md (figures, tables and
in words what is and is not significant, every number with its run ids), curve.png/.pdf,
bars.png/.pdf, table.md, table.tex, cost.md, runs.csv.

    out = report(tracking, report_options, "results", cache_dir="outputs/cache")
"""

from __future__ import annotations

from pathlib import Path

from limo_exp.analysis import stats
from limo_exp.analysis.cost import cost_markdown, cost_rows
from limo_exp.analysis.curves import line_fits, plot_bars, plot_curves
from limo_exp.analysis.study import Study, held_fixed, load_study, missing_control
from limo_exp.analysis.tables import (
    Row,
    latex,
    mark_significant_best,
    markdown,
    measured_rows,
    reported_rows,
    short,
)
from limo_exp.config import ReportConfig, TrackingConfig


def report(
    tracking: TrackingConfig,
    opts: ReportConfig,
    results_dir: str | Path,
    cache_dir: str | Path,
    labels: dict[str, str] | None = None,
) -> dict:
    """``labels``: what tables call a model or tier (labels.conf_labels()); the runs'
    logged labels under them, ``opts.labels`` over them, the ids where none is known."""
    out = Path(results_dir) / tracking.experiment
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(tracking, Path(cache_dir) / "samples", dict(labels or {}) | (opts.labels or {}))
    tasks = study.tasks()
    if not tasks:
        raise SystemExit(
            f"study {tracking.experiment!r} has runs but no graded samples (eval/samples_*.jsonl)"
        )
    study.frame.to_csv(out / "runs.csv", index=False)
    rows = measured_rows(study, opts)
    extra = reported_rows(opts.reported, tasks)  # a bad key fails here, before any figure is drawn
    best = mark_significant_best(study, rows, opts)
    caption = stats.method_note(opts.n_boot, opts.level, opts.seed)
    table_caption = (
        caption + f"; bold: best, and better than the runner-up under a paired test at p < {opts.alpha}"
    )
    subject = subject_of(study)
    (out / "table.md").write_text(markdown(rows + extra, tasks, opts, subject))
    (out / "table.tex").write_text(latex(rows + extra, tasks, opts, f"tab:{tracking.experiment}", subject))
    fits = line_fits(study, opts)
    figures = plot_curves(study, rows, fits, out / "curve", caption)
    figures += plot_bars(study, rows, out / "bars", caption)
    costs = cost_rows(study, rows)
    (out / "cost.md").write_text(cost_markdown(costs))
    words = findings(study, rows, opts)
    text = _document(
        study, rows + extra, tasks, fits, best, words, costs, figures, table_caption, opts, subject
    )
    (out / "report.md").write_text(text)
    return {
        "runs": len(study.frame),
        "report": out / "report.md",
        "curve": out / "curve.png",
        "table": out / "table.md",
        "latex": out / "table.tex",
        "figures": figures,
        "csv": out / "runs.csv",
        "frame": study.frame,
        "rows": rows + extra,
        "fits": fits,
        "findings": words,
    }


def subject_of(study: Study) -> str | None:
    """The base model every run of the study shares, by its label (None: the study varies it)."""
    held = held_fixed(study.frame)
    models = set(study.frame["model.name"].dropna().astype(str)) if "model.name" in study.frame else set()
    if "model.name" not in held or models != {held["model.name"]}:
        return None
    return study.label(held["model.name"])


def _pair(study: Study, a: Row, b: Row, task: str, opts) -> dict | None:
    return study.paired(a.run_ids, b.run_ids, task, opts)


def _sentence(a: Row, b: Row, task: str, res: dict, opts) -> str:
    verdict = "significant" if res["p_value"] < opts.alpha else "not significant"
    return (
        f"- **{short(task)}**: {a.label} at N={a.n} vs {b.label}{'' if b.n is None else f' at N={b.n}'}: "
        f"{res['acc_a']:.3f} vs {res['acc_b']:.3f}, difference {res['diff']:+.3f} "
        f"[{res['ci_low']:+.3f}, {res['ci_high']:+.3f}] on {res['n']} problems, {res['test']} p = "
        f"{res['p_value']:.3g}: **{verdict}** at {opts.alpha} (runs {', '.join(a.run_ids)} vs "
        f"{', '.join(b.run_ids)})"
    )


def findings(study: Study, rows: list[Row], opts) -> list[str]:
    """The claims a reader checks first, in words: each setting at its largest N against the
    untrained model, and the settings against each other at the largest N they share."""
    base = [r for r in rows if r.point.kind == "eval"]
    tuned = [r for r in rows if r.point.kind == "run"]
    out = []
    for label in sorted({r.point.label() for r in tuned}):
        top = max((r for r in tuned if r.point.label() == label), key=lambda r: r.n)
        for b in base:
            for task in study.tasks():
                res = _pair(study, top, b, task, opts)
                if res:
                    out.append(_sentence(top, b, task, res, opts))
    by_n: dict[int, list[Row]] = {}
    for r in tuned:
        by_n.setdefault(r.n, []).append(r)
    shared = [n for n, rs in by_n.items() if len(rs) >= 2]
    if shared:
        group = sorted(by_n[max(shared)], key=lambda r: r.label)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                for task in study.tasks():
                    res = _pair(study, a, b, task, opts)
                    if res:
                        out.append(_sentence(a, b, task, res, opts))
    return out


def _fit_lines(fits: dict) -> list[str]:
    lines = ["| setting | benchmark | fit | N at 95% of plateau |", "|---|---|---|---|"]
    for (label, task), f in sorted(fits.items()):
        if isinstance(f, stats.Fit):
            n95 = "- (no plateau)" if f.n95 is None else f"{f.n95:.0f}"
            if f.n95_low is not None:
                n95 += f" [{f.n95_low:.0f}, {f.n95_high:.0f}]"
            lines.append(f"| {label} | {short(task)} | {f.kind}: {f.formula()} | {n95} |")
        else:
            lines.append(f"| {label} | {short(task)} | {f} | - |")
    return lines


def _document(study, rows, tasks, fits, best, words, costs, figures, caption, opts, subject) -> str:
    n_runs = len(study.frame)
    parts = [
        f"# Study `{study.name}`",
        "",
        f"{n_runs} FINISHED runs read from MLflow; benchmarks: {', '.join(tasks)}. {caption}.",
        "",
        "Every fine-tuned run: "
        + (", ".join(f"`{k}={v}`" for k, v in held_fixed(study.frame).items()) or "-"),
        "",
        *([f"**Warning**: {w}.", ""] if (w := missing_control(study.frame)) else []),
        "## What is and is not significant",
        "",
        *(words or ["- no pair of settings shares problems: nothing to test"]),
        "",
    ]
    for task, res in best.items():
        verdict = "significantly" if res["p_value"] < opts.alpha and res["diff"] > 0 else "not significantly"
        parts.append(
            f"- best on {short(task)}: {res['best']} (N={res['best_n']}), {verdict} better than the runner-up "
            f"{res['second']} (N={res['second_n']}): {res['diff']:+.3f} [{res['ci_low']:+.3f}, "
            f"{res['ci_high']:+.3f}], p = {res['p_value']:.3g}"
        )
    parts += ["", "## Curves", ""]
    parts += [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"]
    parts += [
        "",
        "Fitted lines (power: acc = a - b N^-c; log-linear: acc = a + b ln N; the lower AIC is kept):",
        "",
    ]
    parts += _fit_lines(fits)
    parts += ["", "## Table", "", markdown(rows, tasks, opts, subject), "LaTeX: `table.tex`.", ""]
    parts += ["## Cost and information", "", cost_markdown(costs)]
    parts += trained_on(study, rows)
    return "\n".join(parts) + "\n"


TRAINED_ON = (  # what a row trained on (selection.choose's figures, training's counts)
    ("questions", "train/questions"),
    ("examples", "train/n_examples"),
    ("solution words", "train/solution_words"),
    ("words cut", "train/words_cut"),
    ("train tokens", "cost/train_tokens"),
)


def trained_on(study: Study, rows: list[Row]) -> list[str]:
    """A table of what each fine-tuned row trained on: questions and examples (answers per
    question), words trained on and cut by truncation, training tokens, each mixture member's
    share of the questions (``train/share/<member>``); means over the row's runs. Empty when no
    run logged them (stores from before these figures)."""
    df = study.frame.set_index("run_id")
    shares = sorted(c for c in df.columns if c.startswith("train/share/"))
    cols = [(name, c) for name, c in TRAINED_ON if c in df.columns]
    cols += [(f"share {c.removeprefix('train/share/')}", c) for c in shares]
    tuned = [r for r in rows if not r.reported and r.point.kind == "run"]
    if not tuned or not any(c.startswith("train/") for _, c in cols):
        return []
    lines = ["", "## What each row trained on", "", "| row | N | " + " | ".join(n for n, _ in cols) + " |"]
    lines.append("|---|---:|" + "---:|" * len(cols))
    for r in tuned:
        vals = [df.loc[list(r.run_ids), c].astype(float).mean() for _, c in cols]
        cells = [
            "-" if v != v else (f"{v:.2f}" if c.startswith("train/share/") else f"{v:,.0f}")
            for v, (_, c) in zip(vals, cols)
        ]
        lines.append(f"| {r.label} | {r.n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "N counts questions: examples = N x data.answers_per_question. Words are whitespace words of",
    ]
    lines += ["the solutions trained on (after quality.truncate); shares are of the questions (pool=mix)."]
    return lines
