"""Two runs of one configuration, compared outcome by outcome: the selected ids, the loss curve
(its largest difference), every problem's verdict (how many agree, the paired test of the
difference, ``stats.paired``) and the headline accuracy. The verdict: ``identical`` (bitwise: the
same ids, losses and responses), ``within noise`` (no benchmark's paired test significant; its p and
the difference's interval), or ``different``; with the first difference found in the order data ->
training -> responses. Also what ``limo-exp diff`` says of two runs' results.
"""

from __future__ import annotations

from limo_exp.analysis import stats

IDENTICAL, WITHIN_NOISE, DIFFERENT = "identical", "within noise", "different"


def _by_problem(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (str(r.get("canonical_id") or r["id"]), int(r.get("sample", 0)))):
        out.setdefault(str(r.get("canonical_id") or r["id"]), []).append(r)
    return out


def responses(samples_a: dict[str, list[dict]], samples_b: dict[str, list[dict]], opts) -> dict:
    """Per task both evaluated: problems in common, how many have every sample's response and verdict
    equal, the problems whose verdicts differ (source ids), and the paired test of the per-problem
    accuracies (``opts``: a ReportConfig: n_boot, level, seed)."""
    out = {}
    for task in sorted(set(samples_a) & set(samples_b)):
        pa, pb = _by_problem(samples_a[task]), _by_problem(samples_b[task])
        both = sorted(set(pa) & set(pb))
        same_text = [
            k for k in both if [r.get("response") for r in pa[k]] == [r.get("response") for r in pb[k]]
        ]
        verdicts = {
            k: ([bool(r["correct"]) for r in pa[k]], [bool(r["correct"]) for r in pb[k]]) for k in both
        }
        disagree = sorted(str(pa[k][0]["id"]) for k in both if verdicts[k][0] != verdicts[k][1])
        entry = {
            "problems": len(both),
            "same_responses": len(same_text),
            "same_verdicts": len(both) - len(disagree),
            "disagree": disagree,
            "only_a": sorted(str(pa[k][0]["id"]) for k in set(pa) - set(pb)),
            "only_b": sorted(str(pb[k][0]["id"]) for k in set(pb) - set(pa)),
            "first_other_response": next((str(pa[k][0]["id"]) for k in both if k not in same_text), None),
        }
        if both:
            xa = [sum(v[0]) / len(v[0]) for v in verdicts.values()]
            xb = [sum(v[1]) / len(v[1]) for v in verdicts.values()]
            entry |= stats.paired(xa, xb, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)
        out[task] = entry
    return out


def losses(a: list[float], b: list[float]) -> dict:
    """The two loss curves step by step: bitwise equal or not, the first step and the largest
    absolute difference where they differ."""
    n = min(len(a), len(b))
    gaps = [abs(x - y) for x, y in zip(a, b)]
    first = next((i + 1 for i in range(n) if a[i] != b[i]), None)
    equal = len(a) == len(b) and first is None
    return {
        "steps": (len(a), len(b)),
        "equal": equal,
        "first_step": first,
        "max_abs_diff": max(gaps, default=0.0),
    }


def compare_runs(a, b, samples_a: dict, samples_b: dict, opts) -> dict:
    """``a``, ``b``: RunRecords (``tracking.record``) of two runs of one configuration; their samples."""
    data = []
    if a.selected_ids != b.selected_ids:
        ids_a, ids_b = set(a.selected_ids or ()), set(b.selected_ids or ())
        data.append(f"selected ids: {len(ids_a - ids_b)} only A, {len(ids_b - ids_a)} only B" if ids_a != ids_b
                    else "selected ids: the same ids in another order")  # fmt: skip
    for context in ("pool", "training", "evaluation"):
        da = {d.name: d.digest for d in a.datasets if d.context == context}
        db = {d.name: d.digest for d in b.datasets if d.context == context}
        data += [f"{context} {n}: digest {da.get(n, '-')[:12]} vs {db.get(n, '-')[:12]}"
                 for n in sorted(set(da) | set(db)) if da.get(n) != db.get(n)]  # fmt: skip
    train = losses(a.losses, b.losses)
    resp = responses(samples_a, samples_b, opts)
    heads = {k: (a.run.metrics[k], b.run.metrics.get(k)) for k in a.run.metrics if k.endswith("/accuracy")}
    first = None
    if data:
        first = "data: " + data[0]
    elif not train["equal"]:
        s = train["first_step"] or min(train["steps"]) + 1
        first = f"training: loss at step {s} (largest difference {train['max_abs_diff']:.3g})"
    else:
        for task, e in resp.items():
            if e["first_other_response"] or e["only_a"] or e["only_b"]:
                item = e["first_other_response"] or (e["only_a"] + e["only_b"])[0]
                first = f"responses: {task} item {item}"
                break
    same = first is None and bool(resp) and all(e["same_responses"] == e["problems"] for e in resp.values())
    if same:
        verdict = IDENTICAL
    elif resp and all("p_value" in e and e["p_value"] >= opts.alpha for e in resp.values()):
        verdict = WITHIN_NOISE
    else:
        verdict = DIFFERENT
    first = first or ("responses: no benchmark both evaluated" if not resp else None)
    return {"verdict": verdict, "first_difference": first, "data": data, "training": train,
            "responses": resp, "headline": heads}  # fmt: skip


def format_agreement(res: dict, level: float) -> str:
    t = res["training"]
    loss = (
        "bitwise equal"
        if t["equal"]
        else f"differ from step {t['first_step']}, largest |diff| {t['max_abs_diff']:.3g}"
    )
    lines = [f"data         {'; '.join(res['data']) or 'the same selected ids and digests'}",
             f"training     {t['steps'][0]} vs {t['steps'][1]} loss steps: {loss}"]  # fmt: skip
    for task, e in res["responses"].items():
        line = f"responses    {task}: {e['same_responses']}/{e['problems']} responses and {e['same_verdicts']}/{e['problems']} verdicts the same"
        if "p_value" in e:
            line += (f"; accuracy {e['acc_a']:.3f} vs {e['acc_b']:.3f}, A - B {e['diff']:+.3f} "
                     f"[{level:.0%} CI {e['ci_low']:+.3f}, {e['ci_high']:+.3f}], {e['test']} p = {e['p_value']:.3g}")  # fmt: skip
        lines.append(line)
    for k, (va, vb) in res["headline"].items():
        lines.append(f"headline     {k}: {va:.4f} vs {'-' if vb is None else f'{vb:.4f}'}")
    verdict = res["verdict"]
    if res["first_difference"]:
        verdict += f" (first difference: {res['first_difference']})"
    return "\n".join([*lines, f"verdict      {verdict}"])
