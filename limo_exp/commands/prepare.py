"""A point before any model loads, shared by ``run`` (which then trains) and ``plan`` (which only
counts): its checks, pool, run key, curated records and the N examples selected. Nothing here
logs, prints or writes, but the curation cache (keyed by content: what a run would write anyway)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from limo_exp.identity import RunSpec

log = logging.getLogger(__name__)


@dataclass
class Point:
    """What ``prepare`` found for one configuration."""

    spec: RunSpec
    pool: list
    fingerprint: str  # the pool's content
    benchmarks: dict  # benchmark -> items, as evaluated and decontaminated against
    key: str  # the run key
    curated: object = None  # curation.Curated: records and funnel (None: not curated yet)
    examples: list = field(default_factory=list)  # the N selected (N x data.answers_per_question)
    figures: dict = field(default_factory=dict)  # train/*: what is trained on (selection.choose)
    curation_seconds: float = 0.0


def check(spec: RunSpec, processes: int = 1) -> None:
    """What fails a run before any data is read: the evaluation's config (``check_eval``), a
    global batch the processes do not divide. Raises ConfigError / ValueError naming the key."""
    from limo_exp import training

    check_eval(spec)
    training.accumulation_steps(spec.config.train, processes)


def check_eval(spec: RunSpec) -> list[str]:
    """The evaluation's config, checked before any model is fetched or converted
    (``registry.check_suite``: tasks, data files, per-task settings); returns the tasks that run.
    ``spec`` is narrowed in place: per-task settings of tasks ``eval.tasks`` does not run are
    dropped from its config and from the mapping its run key and params are computed from. A
    group member without its local file is warned about here, before anything else runs."""
    from limo_exp.evaluation import registry

    checked = registry.check_suite(spec.config.eval)
    spec.config.eval = checked.config
    if checked.dropped and isinstance(spec.resolved.get("eval"), dict):
        spec.resolved["eval"] |= {
            "num_samples": checked.config.num_samples,
            "revision": checked.config.revision,
        }
    for task, why in checked.skipped.items():
        log.warning("skipping %s: %s", task, why)
    return checked.kept


def identify(spec: RunSpec, memo: dict | None = None) -> Point:
    """A configuration's pool, the pool's fingerprint, its benchmarks and its run key: what
    decides whether it already ran (no model, no curation). ``memo``: loads kept across the
    points of one sweep, keyed by the pool's and the suite's settings."""
    from limo_exp.data import pools
    from limo_exp.data.fingerprints import pool_fingerprint
    from limo_exp.evaluation import registry

    c = spec.config
    memo = {} if memo is None else memo

    def once(at, load):  # a failed load fails again at once (an unreachable hub: one try a sweep)
        if at not in memo:
            try:
                memo[at] = load()
            except OSError as e:
                memo[at] = e
        if isinstance(memo[at], OSError):
            raise memo[at]
        return memo[at]

    def read_pool():
        pool = pools.load_pool_from_config(c.pool)
        return pool, pool_fingerprint(pool)

    def read_suite():
        benchmarks = registry.benchmarks_for(c.eval)
        return benchmarks, registry.benchmarks_fingerprint(benchmarks)

    pool, fingerprint = once(("pool", repr(c.pool)), read_pool)
    benchmarks, benchmarks_fingerprint = once(("eval", repr(c.eval)), read_suite)
    return Point(spec, pool, fingerprint, benchmarks, spec.key(fingerprint, benchmarks_fingerprint))


def select(point: Point) -> Point:
    """Curate (cached by content: the points of a sweep curate once) and select N: the point with
    ``curated`` and ``examples`` filled. Raises NotEnoughRecords (N larger than what curation
    keeps) and the pool's field errors before curating."""
    from limo_exp import curation
    from limo_exp.selection import choose

    c = point.spec.config
    choose.check(point.pool, c)  # fields and counts, before curation
    started = time.perf_counter()
    cache = Path(c.paths.cache_dir) / "curated"
    point.curated = curation.curate_cached(point.pool, c.curation, point.benchmarks, cache)
    point.curation_seconds = time.perf_counter() - started
    point.examples, point.figures = choose.choose(point.curated.records, c, point.curated.funnel)
    return point
