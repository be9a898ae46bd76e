"""``limo-exp diff <run A> <run B> [tracking.uri=...]``: what differs between two runs, from their
MLflow records alone (no data read, no model): config keys (the semantic ones first, by the run
key's rules), environment (code, Python, packages, hardware), data (pool fingerprint, benchmark
digests and the items that differ, the selected ids and training texts) and, where both were
evaluated, the problems they disagree on with the paired test. The checks of ``limo-exp reproduce``,
on two records.

    limo-exp diff 3f8e9c7d4d7a4102a5a03f5c7b79fad6 1d385158b312467dab976a295a103ca4
    limo-exp diff <run key A> <run key B> tracking.uri=http://mlflow.example:5000
"""

from __future__ import annotations

import sys

from limo_exp.analysis import checks
from limo_exp.identity import is_semantic, with_neutral_leaves
from limo_exp.typed import flatten

USAGE = "usage: limo-exp diff <run A> <run B> [tracking.uri=...]  (run ids or run keys)"
SIDES = ("A", "B")


def config_of(rec) -> dict[str, str]:
    """A run's flattened config: its config.yaml, else (an older run) its params; leaves added since
    at their neutral values, so that an older run and a newer one read alike."""
    flat = flatten(rec.config) if rec.config else dict(rec.run.params)
    return with_neutral_leaves(flat)


def data_checks(ra, rb, sa: dict, sb: dict) -> list[checks.Check]:
    from limo_exp.evaluation import registry
    from limo_exp.tracking.names import RUN_KEY_TAG

    fa, fb = ra.tags.get("limo.pool_fingerprint", ""), rb.tags.get("limo.pool_fingerprint", "")
    out = [checks.items_check("pool", None, None, fa, fb, SIDES) if fa else
           checks.Check("data:pool", checks.UNKNOWN, "A's pool fingerprint was not recorded")]  # fmt: skip
    da = {d.name: d.digest for d in ra.datasets if d.context == "evaluation"}
    db = {d.name: d.digest for d in rb.datasets if d.context == "evaluation"}
    for name in sorted(set(da) | set(db)):
        bench = name.removeprefix("eval/")
        if name not in da or name not in db:
            out.append(
                checks.Check(
                    f"data:{bench}", checks.DIFFERS, f"evaluated by {'A' if name in da else 'B'} only"
                )
            )
            continue

        def items(samples, bench=bench):
            rows = [r for t, rs in samples.items() if registry.benchmark_name(t) == bench for r in rs]
            return checks.recorded_items(rows) if rows else None

        ia, ib = items(sa), items(sb)
        got = checks.items_check(bench, ia, ib if ia is not None else None, da[name], db[name], SIDES)
        out.append(got)
    ka, kb = ra.tags.get(RUN_KEY_TAG, "-"), rb.tags.get(RUN_KEY_TAG, "-")
    out.append(
        checks.Check(
            "run key", checks.OK if ka == kb else checks.DIFFERS, ka if ka == kb else f"{ka} vs {kb}"
        )
    )
    if ra.selected_ids is None or rb.selected_ids is None:
        out.append(checks.Check("selection", checks.UNKNOWN, "a run without selected_ids.json"))
    else:
        out.append(
            checks.selection(ra.selected_ids, rb.selected_ids, ra.training_rows, rb.training_rows, SIDES)
        )
    return out


def environment_checks(ra, rb) -> list[checks.Check]:
    env_b = rb.environment if rb.environment is not None else checks.versions_from_tags(rb.tags)
    return [
        checks.code(ra.tags, rb.tags, SIDES),
        checks.python(ra.tags, rb.tags, SIDES),
        checks.packages(ra.environment, env_b, ra.tags, SIDES),
        checks.hardware(ra.tags, rb.tags, SIDES),
    ]


def diff(cfg, a: str, b: str) -> dict:
    """The differences between runs ``a`` and ``b`` (run ids or keys) of the store ``cfg`` tracks to."""
    from limo_exp.analysis.agreement import responses
    from limo_exp.commands.common import parse
    from limo_exp.tracking.record import RecordStore

    c = parse(cfg).config
    store = RecordStore(c.tracking.uri)
    ra, rb = store.record(a), store.record(b)
    sa, sb = store.samples(ra.run_id), store.samples(rb.run_id)
    keys = checks.config_differences(config_of(ra), config_of(rb))
    semantic = [k for k in keys if is_semantic(k[0])]
    table = environment_checks(ra, rb) + data_checks(ra, rb, sa, sb)
    results = responses(sa, sb, c.report)
    print(f"A = {ra.run_id} ({ra.run.name}, study {ra.experiment!r})")
    print(f"B = {rb.run_id} ({rb.run.name}, study {rb.experiment!r})")
    print(f"\nconfig: {len(semantic)} semantic key(s) differ (they change what a run computes)")
    for k, va, vb in keys:
        if k == (keys[len(semantic)][0] if len(keys) > len(semantic) else None):
            print(
                f"config: {len(keys) - len(semantic)} other key(s) differ (where things are, how they are logged)"
            )
        print(f"  {k:<40} {va if va is not None else '(absent)'}  ->  {vb if vb is not None else '(absent)'}")
    print("\n" + checks.format_table(table))
    for task, e in results.items():
        print(f"\n{task}: {e['problems']} problems both evaluated, {e['same_verdicts']} same verdicts")
        if "p_value" in e:
            print(f"  accuracy {e['acc_a']:.3f} (A) vs {e['acc_b']:.3f} (B), A - B {e['diff']:+.3f} "
                  f"[{c.report.level:.0%} CI {e['ci_low']:+.3f}, {e['ci_high']:+.3f}], {e['test']} p = {e['p_value']:.3g}")  # fmt: skip
        if e["disagree"]:
            print(f"  they disagree on {len(e['disagree'])}: {', '.join(e['disagree'])}")
    return {"a": ra.run_id, "b": rb.run_id, "config": keys, "semantic": [k for k, _, _ in semantic],
            "checks": table, "results": results}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from limo_exp.commands.reproduce import today_config

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or any("=" in a or a.startswith("-") for a in args[:2]):
        raise SystemExit(USAGE)
    try:
        cfg = today_config(args[2:])
    except Exception as e:  # a Hydra override error: one line
        raise SystemExit(f"limo-exp diff: {str(e).splitlines()[0]}") from None
    diff(cfg, args[0], args[1])
