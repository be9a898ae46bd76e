"""What each point of a study cost, and the information its selection carries: the side of
"less is more" a headline hides (the R1 filtering of ten million problems behind 817 examples).

Per point (means over its seeds): training tokens, device-hours (training + evaluation) and
FLOPs; curation records scanned and seconds; teacher tokens when solutions were generated
(``cost/teacher_tokens``, ``cost/teacher_seconds``: limo-exp distill); log2 C(curated pool, N) bits of selection; device-seconds per
correct answer.
"""

from __future__ import annotations

from limo_exp.analysis import stats
from limo_exp.analysis.study import Study
from limo_exp.analysis.tables import Row

COLUMNS = (
    ("train tokens", "cost/train_tokens"),
    ("train device-h", "cost/device_hours"),
    ("eval device-h", "cost/eval_device_hours"),
    ("train FLOPs", "cost/train_flops_est"),
    ("records scanned", "curation/records_scanned"),
    ("curation s", "cost/curation_seconds"),
    ("teacher tokens", "cost/teacher_tokens"),
    ("teacher s", "cost/teacher_seconds"),
)


def _mean(study: Study, run_ids, col: str) -> float | None:
    if col not in study.frame.columns:
        return None
    vals = study.frame.set_index("run_id").loc[list(run_ids), col].dropna()
    return None if vals.empty else float(vals.mean())


def cost_rows(study: Study, rows: list[Row]) -> list[dict]:
    out = []
    for r in rows:
        if r.reported:
            continue
        d = {"row": r.label, "N": r.n, "runs": ", ".join(r.run_ids)}
        for name, col in COLUMNS:
            d[name] = _mean(study, r.run_ids, col)
        pool = _mean(study, r.run_ids, "curation/pool_size")
        d["selection bits"] = stats.selection_bits(int(pool), r.n) if pool is not None and r.n else None
        correct = 0.0
        for task in r.cells:
            a, items = study.array(r.run_ids, task)
            correct += float(a.mean(axis=(0, 2)).sum())  # problems solved (mean over seeds, samples)
        hours = sum(d[k] or 0.0 for k in ("train device-h", "eval device-h"))
        d["correct"] = correct
        d["device-s per correct"] = hours * 3600 / correct if correct and hours else None
        out.append(d)
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"
    return str(v)


def cost_markdown(table: list[dict]) -> str:
    if not table:
        return ""
    cols = list(table[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(d[c]) for c in cols) + " |" for d in table]
    return "\n".join(lines) + (
        "\n\nselection bits = log2 C(curated pool size, N): the information choosing N examples out of "
        "the curated pool can carry. device-s per correct = (training + evaluation device-seconds) / "
        "problems solved over all benchmarks (mean over seeds and samples). Curation seconds and teacher "
        "tokens are the curation's own cost, shared by every run that reads the same curated pool.\n"
    )
