"""What could make a run come out differently, side by side: code, packages, hardware, data, config.
Each check is one line of a table, ``ok`` / ``differs`` / ``unknown``, with what differs and, where
there is one, what to do about it (the pip command, the key to set). Plain data in (tags,
environment lists, fingerprints, ids), no MLflow: ``limo-exp reproduce`` compares a run's record
with this checkout, ``limo-exp diff`` two records.
"""

from __future__ import annotations

from dataclasses import dataclass

from limo_exp.data.fingerprints import item_set_difference
from limo_exp.identity import is_semantic

OK, DIFFERS, UNKNOWN = "ok", "differs", "unknown"
SHOWN = 6  # differences named in a table's cell; the rest counted


@dataclass
class Check:
    facet: str  # code | python | packages | hardware | data:pool | data:<benchmark> | selection | config
    status: str  # ok | differs | unknown
    detail: str
    fix: str = ""  # what would remove the difference (a command, a key to set)


def _some(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def code(a: dict[str, str], b: dict[str, str], sides=("run", "here")) -> Check:
    """The git commits and whether either tree was dirty (tags ``git.commit``, ``git.dirty``)."""
    ca, cb = a.get("git.commit", "unknown"), b.get("git.commit", "unknown")
    dirty = [s for s, t in zip(sides, (a, b)) if t.get("git.dirty") == "true"]
    note = f"; dirty tree: {', '.join(dirty)} (uncommitted changes are not recorded)" if dirty else ""
    if "unknown" in (ca, cb):
        return Check("code", UNKNOWN, f"commit {ca[:12]} ({sides[0]}) vs {cb[:12]} ({sides[1]}){note}")
    if ca != cb:
        return Check("code", DIFFERS, f"commit {ca[:12]} ({sides[0]}) vs {cb[:12]} ({sides[1]}){note}",
                     f"git checkout {ca}")  # fmt: skip
    return Check("code", UNKNOWN if dirty else OK, f"commit {ca[:12]}{note}")


def python(a: dict[str, str], b: dict[str, str], sides=("run", "here")) -> Check:
    va, vb = a.get("python.version"), b.get("python.version")
    if va is None or vb is None:
        return Check(
            "python", UNKNOWN, f"{va or 'not recorded'} ({sides[0]}) vs {vb or 'not recorded'} ({sides[1]})"
        )
    return Check(
        "python", OK if va == vb else DIFFERS, va if va == vb else f"{va} ({sides[0]}) vs {vb} ({sides[1]})"
    )


def versions_from_tags(tags: dict[str, str]) -> dict[str, str]:
    """The seven ``version.*`` tags every run has carried: what an older run's packages are."""
    return {
        k.removeprefix("version."): v for k, v in tags.items() if k.startswith("version.") and v != "absent"
    }


def packages(
    a: dict[str, str] | None, b: dict[str, str], a_tags: dict[str, str], sides=("run", "here")
) -> Check:
    """Every installed distribution of ``a`` (its environment.txt; an older run: its version.* tags)
    against ``b``'s; the fix: the pip command that makes ``b``'s environment ``a``'s."""
    partial = a is None
    a = versions_from_tags(a_tags) if partial else a
    names = sorted(a) if partial else sorted(set(a) | set(b))
    changed = [f"{n} {a[n]} ({sides[0]}) vs {b[n]}" for n in names if n in a and n in b and a[n] != b[n]]
    only_a = [f"{n}=={a[n]}" for n in names if n in a and n not in b]
    only_b = [f"{n}=={b[n]}" for n in names if n in b and n not in a]
    pins = [f"'{n}=={a[n]}'" for n in names if n in a and a.get(n) != b.get(n) and n != "limo-exp"]
    parts = [f"{len(changed)} version(s) differ: {_some(changed)}"] if changed else []
    parts += [f"only {sides[0]}: {_some(only_a)}"] if only_a else []
    parts += [f"only {sides[1]}: {_some(only_b)}"] if only_b else []
    fix = f"pip install {' '.join(pins)}" if pins else ""
    fix += f"; pip uninstall {' '.join(n.split('==')[0] for n in only_b)}" if only_b else ""
    if partial:
        what = "; ".join(parts) or f"the {len(a)} recorded versions agree"
        return Check("packages", UNKNOWN if not parts else DIFFERS,
                     f"{sides[0]} predates environment.txt (only {len(a)} version.* tags): {what}", fix)  # fmt: skip
    if not parts:
        return Check("packages", OK, f"all {len(a)} distributions at the same versions")
    return Check("packages", DIFFERS, "; ".join(parts), fix.lstrip("; "))


GPU_EFFECT = "matmul and attention kernels (bf16) and reduction order differ: losses differ in the last bits, a greedy response can flip"
CPU_EFFECT = "vectorised kernels (AVX2 / AVX-512) sum in another order: float results differ in the last bits"
COUNT_EFFECT = "gradients summed over another number of devices (all-reduce order, per-device micro-batches)"


def hardware(a: dict[str, str], b: dict[str, str], sides=("run", "here")) -> Check:
    """Device type and count (and CUDA's stack), with what a difference is known to change."""

    def device(t):
        gpus = t.get("hardware.gpus", "unknown")
        return ("cpu: " + t.get("hardware.cpu_model", "unknown cpu")) if gpus == "none" else gpus

    da, db = device(a), device(b)
    if da.startswith("cpu") and db.startswith("cpu") and "unknown cpu" in da + db:
        return Check(
            "hardware", UNKNOWN, f"{da} ({sides[0]}) vs {db} ({sides[1]}): the CPU model was not recorded"
        )
    stack = ("cuda.driver", "cuda.runtime", "cuda.cudnn", "cuda.nccl")
    cuda = [f"{k} {a.get(k)} vs {b.get(k)}" for k in stack if a.get(k) != b.get(k) and (k in a or k in b)]
    if "unknown" in (a.get("hardware.gpus", "unknown"), b.get("hardware.gpus", "unknown")):
        return Check("hardware", UNKNOWN, f"{da} ({sides[0]}) vs {db} ({sides[1]})")
    effects = []
    if (a["hardware.gpus"] == "none") != (b["hardware.gpus"] == "none"):
        effects.append(
            "CPU vs GPU: another dtype under dtype=auto (fp32 vs bf16), other kernels: results differ"
        )
    elif da != db:
        effects.append(CPU_EFFECT if a["hardware.gpus"] == "none" else GPU_EFFECT)
    if a.get("hardware.gpu_count", "0") != b.get("hardware.gpu_count", "0") and a["hardware.gpus"] != "none":
        effects.append(COUNT_EFFECT)
    if cuda:
        effects.append(f"{_some(cuda)}: kernel choices")
    if not effects:
        return Check("hardware", OK, da)
    return Check("hardware", DIFFERS, f"{da} ({sides[0]}) vs {db} ({sides[1]}): " + "; ".join(effects))


class RecordedItem:
    """A benchmark item as a run's samples recorded it (source id, canonical id, gold answers)."""

    def __init__(self, row: dict):
        self.id, self.canonical_id = str(row["id"]), str(row.get("canonical_id") or row["id"])
        gold = row.get("gold")
        self.answers = gold if isinstance(gold, list) else [str(gold)]


def recorded_items(samples: list[dict]) -> list[RecordedItem]:
    return list({str(r["id"]): RecordedItem(r) for r in samples}.values())


def items_check(
    name: str, recorded, today, recorded_digest: str, today_digest: str, sides=("run", "here")
) -> Check:
    """A benchmark (or a pool) as recorded vs as read today: equal digests, else the items that differ
    (``item_set_difference``): edited (one source id, another problem), only on one side, another gold answer."""
    if recorded_digest and today_digest and today_digest.startswith(recorded_digest[:16]):
        return Check(f"data:{name}", OK, f"digest {recorded_digest[:12]}")
    if recorded is None:
        what = f"digest {recorded_digest[:12] or 'not recorded'} ({sides[0]}) vs {today_digest[:12]} ({sides[1]})"
        return Check(
            f"data:{name}", DIFFERS if recorded_digest else UNKNOWN, what + " (its items were not recorded)"
        )
    diff = item_set_difference(recorded, today)
    edited = sorted(set(diff["only_a"]) & set(diff["only_b"]))
    parts = [f"edited: {_some(edited)}"] if edited else []
    only_a, only_b = (
        [i for i in diff["only_a"] if i not in edited],
        [i for i in diff["only_b"] if i not in edited],
    )
    parts += [f"only {sides[0]}: {_some(only_a)}"] if only_a else []
    parts += [f"only {sides[1]}: {_some(only_b)}"] if only_b else []
    parts += [f"gold answer differs: {_some(diff['answer_differs'])}"] if diff["answer_differs"] else []
    if not parts:
        return Check(
            f"data:{name}",
            DIFFERS,
            f"digest {recorded_digest[:12]} vs {today_digest[:12]}: the same problems and answers",
        )
    return Check(f"data:{name}", DIFFERS, "; ".join(parts))


def selection(
    recorded: list[str] | None,
    today: list[str],
    rows_a: list[dict] | None = None,
    rows_b: list[dict] | None = None,
    sides=("run", "here"),
) -> Check:
    """The selected ids (in order), and for the same ids, the training texts that differ."""
    if recorded is None:
        return Check(
            "selection", UNKNOWN, f"{sides[0]} predates selected_ids.json; {sides[1]} selects {len(today)}"
        )
    if recorded != today:
        a, b = set(recorded), set(today)
        short, long_, names = (
            (recorded, today, sides) if len(recorded) <= len(today) else (today, recorded, sides[::-1])
        )
        if long_[: len(short)] == short:  # nested: the smaller N is the larger's first ids
            more = sorted(set(long_) - set(short))
            what = f"{names[0]}'s {len(short)} ids are {names[1]}'s first {len(short)} (nested); {names[1]} has {len(more)} more: {_some(more)}"
            return Check("selection", DIFFERS, what)
        parts = [f"{len(a - b)} id(s) only {sides[0]}: {_some(sorted(a - b))}"] if a - b else []
        parts += [f"{len(b - a)} only {sides[1]}: {_some(sorted(b - a))}"] if b - a else []
        return Check("selection", DIFFERS, "; ".join(parts) if a != b else "the same ids in another order")
    if rows_a is not None and rows_b is not None:
        text = {r["id"]: (r["problem"], r["text"]) for r in rows_b}
        changed = [r["id"] for r in rows_a if text.get(r["id"]) != (r["problem"], r["text"])]
        if changed:
            return Check(
                "selection", DIFFERS, f"the same {len(recorded)} ids; training text differs: {_some(changed)}"
            )
    return Check("selection", OK, f"the same {len(recorded)} ids in the same order")


def config_differences(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """Flattened config keys whose values differ: the semantic ones first (the run key's rules), each
    group sorted; (key, a's value, b's value), None where a side lacks the key."""
    keys = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    keys.sort(key=lambda k: (not is_semantic(k), k))
    return [(k, a.get(k), b.get(k)) for k in keys]


def format_table(checks: list[Check]) -> str:
    width = max(len(c.facet) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.facet:<{width}}  {c.status:<8}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<{width}}  {'':<8}  -> {c.fix}")
    return "\n".join(lines)
