"""``limo-exp compare A B``: two systems on the problems both evaluated, per benchmark.

A and B are each a run id, a run key, or ``param=value[;param=value]`` (the runs of the study
that match; several runs must differ only by seed, and are averaged per problem). The protocol
must be the same on both sides (sampling, budget, prompt, grader): a difference is named and
nothing is computed. Items only one side has (say a hub copy against a local one) are named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from limo_exp.analysis import stats, suite_mean
from limo_exp.analysis.study import AXES, Study
from limo_exp.identity import is_semantic

# eval settings (run tags eval.<name>) that change what a score means: compared runs must agree
PROTOCOL = (
    "temperature",
    "top_p",
    "num_samples",
    "max_gen_toks_requested",
    "instruction",
    "system_prompt",
    "grader_version",
    "gpqa_seed",
)
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RUN_KEY = re.compile(r"^[0-9a-f]{20}$")


class CompareError(ValueError):
    """The two sides cannot be compared; the message says why."""


def resolve(study: Study, selector: str) -> list[str]:
    """A selector -> the run ids it names (FINISHED runs of the study)."""
    df = study.frame
    sel = selector.strip()
    if _RUN_ID.match(sel):
        rows = df[df["run_id"] == sel]
    elif _RUN_KEY.match(sel):
        rows = df[df["run_key"] == sel]
    elif "=" in sel:
        rows = df
        for part in filter(None, (p.strip() for p in sel.split(";"))):
            key, _, value = part.partition("=")
            if key not in df.columns:
                params = sorted(c for c in df.columns if "." in c and not c.startswith(("eval/", "train/")))
                raise CompareError(
                    f"{selector!r}: no param {key!r} in study {study.name!r}; params: {params}"
                )
            rows = rows[rows[key].astype(str) == value]
    else:
        raise CompareError(
            f"{selector!r} is neither a run id (32 hex), a run key (20 hex) nor param=value[;...]"
        )
    if rows.empty:
        raise CompareError(f"{selector!r} matches no FINISHED run of study {study.name!r}")
    varying = [
        c
        for c in rows.columns
        if "." in c
        and c not in AXES[:1]
        and not c.startswith(("eval/", "train/", "cost/", "curation/"))
        and rows[c].astype(str).nunique() > 1
        and is_semantic(c)
    ]
    if varying:
        raise CompareError(
            f"{selector!r} matches runs that differ in more than the seed: {varying}; narrow it"
        )
    return list(rows.sort_values("seed")["run_id"])


def protocol_differences(study: Study, a: list[str], b: list[str]) -> dict[str, tuple]:
    """Protocol settings that differ between the two sides: name -> (A's values, B's values)."""
    tags = study.tags
    out = {}
    for name in PROTOCOL:
        va = sorted({tags.get(r, {}).get(f"eval.{name}", "") for r in a})
        vb = sorted({tags.get(r, {}).get(f"eval.{name}", "") for r in b})
        if va != vb:
            out[name] = (va, vb)
    return out


def compare(study: Study, sel_a: str, sel_b: str, opts) -> dict:
    """Per shared benchmark: accuracies, the paired difference and test, items one side lacks
    (``opts``: a ReportConfig); over two benchmarks or more, ``suite``: the same for their
    unweighted mean (``suite_mean.paired``)."""
    a, b = resolve(study, sel_a), resolve(study, sel_b)
    if set(a) == set(b):
        raise CompareError(f"{sel_a!r} and {sel_b!r} name the same runs")
    differ = protocol_differences(study, a, b)
    if differ:
        lines = "; ".join(f"{k}: A={va} B={vb}" for k, (va, vb) in differ.items())
        raise CompareError(f"A and B were evaluated under different protocols ({lines}): not comparable")
    tasks_a = set.intersection(*(set(study.scores[r].scores) for r in a))
    tasks_b = set.intersection(*(set(study.scores[r].scores) for r in b))
    shared = sorted(tasks_a & tasks_b)
    if not shared:
        raise CompareError(f"no benchmark in common: A evaluated {sorted(tasks_a)}, B {sorted(tasks_b)}")
    out = {"a": {"selector": sel_a, "run_ids": a}, "b": {"selector": sel_b, "run_ids": b}, "tasks": {}}
    paired_scores = {}
    for task in shared:
        xa, items_a = study.per_problem(a, task)
        xb, items_b = study.per_problem(b, task)
        both = sorted(set(items_a) & set(items_b))
        only_a = sorted(study.source_ids(a[0], task).get(i, i) for i in set(items_a) - set(items_b))
        only_b = sorted(study.source_ids(b[0], task).get(i, i) for i in set(items_b) - set(items_a))
        entry = {"only_a": only_a, "only_b": only_b}
        if not both:
            entry["error"] = f"no problem both evaluated ({len(items_a)} in A, {len(items_b)} in B)"
        else:
            pa, _ = study.per_problem(a, task, both)
            pb, _ = study.per_problem(b, task, both)
            entry |= stats.paired(pa, pb, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
            paired_scores[task] = (pa, pb)
        out["tasks"][task] = entry
    if all("error" in e for e in out["tasks"].values()):
        raise CompareError(
            "the two sides share no problem: "
            + "; ".join(f"{t}: {e['error']}" for t, e in out["tasks"].items())
        )
    usable = {t: ab for t, ab in paired_scores.items() if len(ab[0]) >= 2}
    if len(usable) >= 2:  # the suite's headline: the unweighted mean of its benchmarks
        out["suite"] = suite_mean.paired(usable, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
        out["suite"]["tasks"] = sorted(usable)
    return out


def format_comparison(res: dict, level: float, alpha: float) -> str:
    a, b = res["a"], res["b"]
    lines = [
        f"A = {a['selector']}  (runs {', '.join(a['run_ids'])})",
        f"B = {b['selector']}  (runs {', '.join(b['run_ids'])})",
        "",
        f"| benchmark | n | A | B | A - B [{level:.0%} CI] | p | test | A only | B only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for task, e in res["tasks"].items():
        if "error" in e:
            lines.append(f"| {task} | 0 | - | - | - | - | - | - | - |")
            notes.append(f"{task}: {e['error']}")
        else:
            sig = " *" if e["p_value"] < alpha else ""
            lines.append(
                f"| {task} | {e['n']} | {e['acc_a']:.3f} | {e['acc_b']:.3f} | {e['diff']:+.3f} "
                f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p_value']:.3g}{sig} | {e['test']} "
                f"| {e['a_only']} | {e['b_only']} |"
            )
        for side in ("only_a", "only_b"):
            if e[side]:
                shown = ", ".join(e[side][:10]) + (" ..." if len(e[side]) > 10 else "")
                notes.append(f"{task}: {len(e[side])} item(s) only in {side[-1].upper()}: {shown}")
    if "suite" in res:
        e = res["suite"]
        sig = " *" if e["p_value"] < alpha else ""
        lines.append(
            f"| mean of {e['benchmarks']} | {e['n']} | {e['acc_a']:.3f} | {e['acc_b']:.3f} | {e['diff']:+.3f} "
            f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p_value']:.3g}{sig} | {e['test']} | - | - |"
        )
        notes.append(
            f"mean of {e['benchmarks']}: the unweighted mean of {', '.join(e['tasks'])} (each benchmark "
            "counts once, whatever its size); its interval resamples each benchmark's problems apart"
        )
    lines += ["", f"* p < {alpha}. Paired over the problems both sides evaluated."] + notes
    return "\n".join(lines) + "\n"


def write_comparison(res: dict, text: str, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{res['a']['run_ids'][0][:8]}_vs_{res['b']['run_ids'][0][:8]}"
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2))
    (out_dir / f"{stem}.md").write_text(text)
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"
