"""Pool sources: read a raw pool (hub data set, local file or the synthetic generator) into Records.

Every source goes through one normaliser driven by a field mapping::

    fields:
      problem: question            # column holding the problem text
      answer: null                 # column with the gold answer; null -> extracted from a solution
      solutions: {human: solution} # solution kind -> column (or list of columns joined by a blank line);
                                   # a column holding a list of strings gives one solution per item
      meta: {level: level}         # meta key -> column

The per-source defaults live in ``pool_sources.SOURCES`` and are spelled out again in
``conf/pool/<name>.yaml`` (a test keeps the two in step). Hub data sets are read with ``datasets.load_dataset``, imported
only when a hub pool is asked for; ``data_dir``/``file`` read local files instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from limo_exp.config import PoolConfig
from limo_exp.data.pool_sources import SOURCES, PoolSource
from limo_exp.data.pool_text import clean_solution, extract_answer, normalize_meta
from limo_exp.data.records import Record, Solution
from limo_exp.typed import ConfigError


class PoolFormatError(ValueError):
    """A pool row that cannot be read: bad JSON, a missing column, a value of the wrong type."""


POOL_NAMES = tuple(SOURCES)
FIELD_KEYS = ("problem", "answer", "solutions", "meta", "keep_if")
DROPPED = "solutions_dropped"  # meta key: solutions a keep_if filter removed from the record


def load_pool(
    name: str,
    *,
    data_dir: str | None = None,
    hub_id: str | None = None,
    hub_config: str | None = None,
    split: str = "train",
    file: str | None = None,
    fields: Mapping[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    revision: str | None = None,
    members: Mapping[str, Any] | None = None,
    teacher: str | None = None,
) -> list[Record]:
    """Load pool ``name`` as Records. Unset arguments take the source's defaults (``SOURCES``).

    Local files win over the hub: ``file`` (a path, or a name inside ``data_dir``), else
    ``data_dir`` / the source's file name. ``n`` keeps the first n records (synthetic: generates n).
    ``mix``: the ``members`` (``limo_exp.data.mix``); ``distilled``: ``teacher``'s solutions only.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown pool {name!r}; valid pools: {', '.join(POOL_NAMES)}")
    for key, value, owner in (("members", members, "mix"), ("teacher", teacher, "distilled")):
        if value is not None and name != owner:
            raise ConfigError(f"pool.{key} is for pool={owner}, not pool={name}")
    src = SOURCES[name]
    if name == "mix":
        from limo_exp.data.mix import load_mix

        return load_mix(members, data_dir, load_pool)
    if name in ("synthetic", "arithmetic"):
        from limo_exp.data.synthetic import make_pool

        return make_pool(2000 if n is None else int(n), seed, "multistep" if name == "synthetic" else name)
    if name == "distilled":
        return one_teacher(read_records(file or "", n), teacher)
    fmap = _check_fields(dict(src.fields) if fields is None else dict(fields), name)
    hub = hub_id or src.hub_id
    path = _local_path(src, data_dir, file, hub)
    if path is not None:
        rows = _iter_local(path)
    elif hub:
        rows = _iter_hub(hub, hub_config if hub_id else (hub_config or src.hub_config), split, fmap, revision)
    else:
        raise ValueError(f"pool {name!r} has no hub copy: set data_dir or file")
    out: list[Record] = []
    for loc, row in rows:
        if n is not None and len(out) >= n:
            break
        out.append(_to_record(row, fmap, loc, name))
    return out


def read_records(path: str, n: int | None = None) -> list[Record]:
    """Records written in limo-exp's own schema (``Record.to_dict`` per line: ``limo-exp distill``'s
    pool.jsonl), the first ``n`` of them."""
    if not path:
        raise ValueError("pool=distilled needs pool.file: the pool.jsonl that limo-exp distill wrote")
    out = []
    for loc, row in _iter_local(path):
        if n is not None and len(out) >= n:
            break
        try:
            rec = Record.from_dict(row)
        except (KeyError, TypeError) as e:
            raise PoolFormatError(f"{loc}: not a limo-exp record ({type(e).__name__}: {e})") from None
        if not isinstance(rec.problem, str) or not rec.problem.strip():
            raise PoolFormatError(f"{loc}: problem must be a non-empty string")
        out.append(rec)
    return out


def one_teacher(records: list[Record], teacher: str | None) -> list[Record]:
    """A distilled pool with ``teacher``'s solutions only (kinds ``teacher:<teacher>:<mode>``; other
    kinds stay), its generation cost only on the records that teacher wrote for."""
    if teacher is None:
        return records
    mine = f"teacher:{teacher}:"
    found = {s.kind.split(":")[1] for r in records for s in r.solutions if s.kind.startswith("teacher:")}
    if teacher not in found:
        raise ConfigError(f"pool.teacher={teacher}: the pool has solutions of teachers {sorted(found)}")
    out = []
    for r in records:
        sols = [s for s in r.solutions if not s.kind.startswith("teacher:") or s.kind.startswith(mine)]
        meta = (
            r.meta
            if r.meta.get("teacher") == teacher
            else {k: v for k, v in r.meta.items() if not k.startswith("teacher")}
        )
        out.append(replace(r, solutions=sols, meta=meta))
    return out


def load_pool_from_config(pool: PoolConfig) -> list[Record]:
    """``load_pool`` from the ``pool`` config group; unset keys take the source's defaults."""
    kw = {k: v for k, v in pool.to_dict().items() if k != "name" and v is not None}
    return load_pool(pool.name, **kw)


def pool_origin(pool: PoolConfig) -> dict[str, Any]:
    """Where a pool's records came from, for the run's dataset entry: a generator with its
    settings, a local file (absolute path), or a hub data set with the commit read."""
    src = SOURCES[pool.name]
    if pool.name == "mix":
        from limo_exp.data.mix import origin

        return origin(pool, pool_origin)
    if pool.name in ("synthetic", "arithmetic"):
        return {"kind": "generated", "generator": "limo_exp.data.synthetic", "family": pool.name,
                "n": pool.n or 2000, "seed": pool.seed}  # fmt: skip
    hub_id = pool.hub_id or src.hub_id
    path = _local_path(src, pool.data_dir, pool.file, hub_id)
    if path:
        return {"kind": "file", "path": os.path.abspath(path)}
    from limo_exp.data import hub

    read = next((e["revision"] for e in hub.loaded() if e["repo"] == hub_id), None)
    split = pool.split or src.split
    return {"kind": "hub", "hub_id": hub_id, "config": pool.hub_config or src.hub_config, "split": split,
            "revision": read or pool.revision}  # fmt: skip


# -- rows -------------------------------------------------------------------------------------


def _check_fields(fmap: dict[str, Any], name: str) -> dict[str, Any]:
    unknown = sorted(set(fmap) - set(FIELD_KEYS))
    if unknown:
        raise ValueError(f"pool {name!r}: unknown field-mapping keys {unknown}; allowed: {list(FIELD_KEYS)}")
    if not isinstance(fmap.get("problem"), str):
        raise ValueError(f"pool {name!r}: fields.problem must name a column, got {fmap.get('problem')!r}")  # noqa: TRY004
    sols = fmap.get("solutions") or {}
    if not isinstance(sols, Mapping):
        raise ValueError(f"pool {name!r}: fields.solutions must map solution kind -> column")  # noqa: TRY004
    fmap["solutions"] = {k: ([v] if isinstance(v, str) else list(v)) for k, v in sols.items()}
    fmap["meta"] = dict(fmap.get("meta") or {})
    fmap["keep_if"] = list(fmap.get("keep_if") or [])
    fmap.setdefault("answer", None)
    return fmap


def _mapped_columns(fmap: Mapping[str, Any]) -> list[tuple[str, str]]:
    cols = [("problem", fmap["problem"])]
    if fmap.get("answer"):
        cols.append(("answer", fmap["answer"]))
    cols += [(f"solutions.{k}", c) for k, cs in fmap["solutions"].items() for c in cs]
    cols += [(f"meta.{k}", c) for k, c in fmap["meta"].items()]
    cols += [(f"keep_if[{i}]", c) for i, c in enumerate(fmap["keep_if"])]
    return cols


def _local_path(src: PoolSource, data_dir: str | None, file: str | None, hub_id: str | None) -> str | None:
    """The local file to read, or None for the hub: ``data_dir``/``file`` (``file`` defaults to the
    source's file name), an absolute ``file``, or ``file`` alone for a pool without a hub id."""
    name = file or src.file
    if data_dir:
        if not name:
            raise ValueError("this pool has no default file name: set file")
        return name if os.path.isabs(name) else os.path.join(data_dir, name)
    if file and (os.path.isabs(file) or not hub_id):
        return file
    return None


def _iter_local(path: str) -> Iterator[tuple[str, dict]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"pool file not found: {path}")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise PoolFormatError(f"{path}:{e.lineno}: bad JSON: {e.msg}") from None
        if not isinstance(data, list):
            raise PoolFormatError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
        for i, row in enumerate(data):
            loc = f"{path} record {i}"
            if not isinstance(row, dict):
                raise PoolFormatError(f"{loc}: expected a JSON object, got {type(row).__name__}")
            yield loc, row
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            loc = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PoolFormatError(f"{loc}: bad JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise PoolFormatError(f"{loc}: expected a JSON object, got {type(row).__name__}")
            yield loc, row


def _iter_hub(
    hub_id: str, hub_config: str | None, split: str, fmap: Mapping, revision: str | None
) -> Iterator[tuple[str, dict]]:
    from limo_exp.data import hub  # lazy: nothing is fetched at import time

    ds = hub.load(hub_id, hub_config, split, revision)
    present = list(ds.column_names)
    for key, col in _mapped_columns(fmap):
        if col not in present:
            raise PoolFormatError(
                f"{hub_id}[{split}]: fields.{key} maps to column {col!r}, not in columns {present}"
            )
    for i, row in enumerate(ds):
        yield f"{hub_id}[{split}] row {i}", row


def _get(row: dict, key: str, col: str, loc: str) -> Any:
    if col not in row:
        raise PoolFormatError(
            f"{loc}: fields.{key} maps to column {col!r}, which is missing; columns present: {sorted(row)}"
        )
    return row[col]


def _texts(value: Any, key: str, loc: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise PoolFormatError(f"{loc}: {key} must be a string or a list of strings, got {type(value).__name__}")


def _to_record(row: dict, fmap: Mapping[str, Any], loc: str, source: str) -> Record:
    problem = _get(row, "problem", fmap["problem"], loc)
    if not isinstance(problem, str) or not problem.strip():
        raise PoolFormatError(f"{loc}: problem must be a non-empty string, got {problem!r:.60}")
    solutions: list[Solution] = []
    dropped = 0
    for kind, cols in fmap["solutions"].items():
        parts = [_texts(_get(row, f"solutions.{kind}", c, loc), f"solutions.{kind} ({c})", loc) for c in cols]
        if len(cols) == 1:
            texts = parts[0]
        else:  # several columns make one solution (e.g. thinking trajectory + final attempt)
            texts = ["\n\n".join(p[0] for p in parts if p)] if any(parts) else []
        if fmap["keep_if"] and len(cols) == 1:  # per-solution flags, one list per column (OpenR1's)
            texts = _kept(row, fmap["keep_if"], texts, loc)
            dropped += len(parts[0]) - len(texts)
        solutions += [Solution(clean_solution(t), kind, source) for t in texts if t.strip()]
    answer: Any = None
    if fmap.get("answer"):
        answer = _get(row, "answer", fmap["answer"], loc)
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float, type(None))):
            raise PoolFormatError(f"{loc}: answer must be a string or a number, got {type(answer).__name__}")
    if answer is None or answer == "":
        answer = next((a for a in (extract_answer(s.text) for s in solutions) if a), "")
    meta = normalize_meta(
        {k: _get(row, f"meta.{k}", c, loc) for k, c in fmap["meta"].items()}, loc, PoolFormatError
    )
    if fmap["keep_if"]:
        meta[DROPPED] = dropped
    return Record.new(problem, _answer_str(answer), solutions, source=source, **meta)


def _kept(row: dict, flag_cols: list[str], texts: list[str], loc: str) -> list[str]:
    """The texts whose flags are all true in every ``keep_if`` column (lists aligned with the texts)."""
    flags = [_get(row, "keep_if", c, loc) for c in flag_cols]
    for c, f in zip(flag_cols, flags):
        if not isinstance(f, list) or len(f) != len(texts):
            raise PoolFormatError(
                f"{loc}: keep_if column {c!r} must be a list of {len(texts)} flags, got {f!r:.60}"
            )
    return [t for i, t in enumerate(texts) if all(bool(f[i]) for f in flags)]


def _answer_str(answer: Any) -> str:
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer).strip()
