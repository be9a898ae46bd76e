"""The one registry of limo_ tasks and groups, read from the task YAMLs in tasks/.

A task is a ``limo_<benchmark>.yaml`` with a ``task:`` key; a group is a YAML with ``group:``
and its member list (``limo_paper.yaml``): membership is stated there and nowhere else.
Here too: which benchmarks an evaluation suite reads (also what curation decontaminates
against), and their fingerprint (part of every run key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from limo_exp.config import ConfigError, EvalConfig
from limo_exp.data import benchmarks
from limo_exp.data.fingerprints import items_digest
from limo_exp.data.records import BenchItem

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"


@cache
def _index() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    import yaml

    class _Loader(yaml.SafeLoader):  # lm-eval's `!function utils.x` tags read as plain strings
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    tasks, groups = [], {}
    for p in sorted(TASKS_DIR.glob("limo_*.yaml")):
        doc = yaml.load(p.read_text(), Loader=_Loader) or {}
        if "group" in doc:
            groups[doc["group"]] = tuple(doc["task"])
        elif "task" in doc:
            tasks.append(doc["task"])
    return tuple(tasks), groups


def tasks() -> tuple[str, ...]:
    """Every leaf task (``limo_aime24`` ...), in file-name order."""
    return _index()[0]


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> member tasks, as the group YAMLs list them."""
    return _index()[1]


def benchmark_name(task: str) -> str:
    """lm-eval task name -> benchmark name: ``limo_math500`` -> ``math500``."""
    return task.removeprefix("limo_")


def check_tasks(names: list[str], index: dict | None = None) -> None:
    """Raise ValueError naming the valid limo_ tasks if any requested name is unknown (or, with
    ``index``, missing from lm-eval's task index: a YAML that failed to load)."""
    valid = set(tasks()) | set(groups())
    if index is not None:
        valid &= set(index)
    unknown = [t for t in names if t not in valid]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names}; valid: {', '.join(sorted(valid))}")


class MissingBenchmark(ConfigError, FileNotFoundError):
    """A benchmark file a suite needs is not in ``eval.data_dir`` (a config error at the command
    line, a FileNotFoundError to code that reads files)."""


def how_to_supply(leaf: str, data_dir: str | Path, missing: list[str]) -> str:
    """Which local file(s) of ``leaf`` are ``missing`` and how to get them: put them there, or the hub."""
    name = benchmark_name(leaf)
    if name == "gpqa_diamond":  # either of its two forms
        missing = [" or ".join(str(Path(data_dir) / f) for f in benchmarks.SOURCES[name][2])]
    hub_id = benchmarks.SOURCES[name][0]
    gated = " (gated: accept its terms on the hub and log in)" if name == "gpqa_diamond" else ""
    return (
        f"no local file {', '.join(missing)}: put it there (docs/data.md), or read {hub_id}{gated} "
        "with eval.data_dir=null"
    )


def require_evaluable(tasks: list[str], data_dir: str | Path | None) -> list[str]:
    """The tasks a suite can run, or a ConfigError before any curation or model load: a local
    ``eval.data_dir`` that does not exist, a task named in ``eval.tasks`` without its file
    (``MissingBenchmark``), or a suite whose every task lacks its file."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ConfigError(
            f"eval.data_dir={data_dir} is not a folder (null reads the benchmarks from the hub)"
        )
    kept, skipped = resolve_tasks(tasks, data_dir)
    if not kept:
        why = "; ".join(f"{t}: {w}" for t, w in skipped.items())
        raise ConfigError(f"eval.tasks={tasks}: no task can run from eval.data_dir={data_dir} ({why})")
    return kept


def resolve_tasks(names: list[str], data_dir: str | Path | None) -> tuple[list[str], dict[str, str]]:
    """Expand groups into leaf tasks and keep those whose data can be read.

    One rule for a missing local file, whatever the protocol: a member of a group (``limo_paper``,
    ``limo_sampled``, ``limo_s1``) whose file is missing is skipped, and returned with the file and
    how to supply it so that callers warn and log it (GPQA is gated and often absent from a local
    folder); a task *named on its own* in ``eval.tasks`` whose file is missing is an error
    (``MissingBenchmark``). With the hub as source (``data_dir`` None) every task is kept.
    Returns (kept, skipped).
    """
    kept: list[str] = []
    skipped: dict[str, str] = {}
    for t in names:
        in_group = t in groups()
        for leaf in groups()[t] if in_group else (t,):
            if leaf in kept or leaf in skipped:
                continue
            name = benchmark_name(leaf)
            if data_dir is not None and name in benchmarks.SOURCES:
                missing = [str(p) for p in benchmarks.local_files(name, data_dir) if not p.exists()]
                if missing:
                    if not in_group:
                        raise MissingBenchmark(
                            f"{leaf} is named in eval.tasks={list(names)}, but eval.data_dir={data_dir} has "
                            f"{how_to_supply(leaf, data_dir, missing)}; or leave it out of eval.tasks"
                        )
                    skipped[leaf] = how_to_supply(leaf, data_dir, missing)
                    continue
            kept.append(leaf)
    return kept, skipped


@dataclass(frozen=True)
class CheckedSuite:
    """An evaluation suite as ``check_suite`` found it."""

    config: EvalConfig  # per-task settings narrowed to the tasks eval.tasks names
    kept: list[str]  # the leaf tasks that run
    skipped: dict[str, str]  # group members without their local file -> the file and how to supply it
    dropped: dict[str, list[str]]  # per-task setting -> the entries dropped (tasks eval.tasks does not run)


def check_suite(suite: EvalConfig) -> CheckedSuite:
    """Everything about an evaluation that can fail without a model, checked before any model is
    fetched or converted: task names, ``eval.data_dir`` and its files (``resolve_tasks``' rule),
    and the per-task settings. A protocol's per-task settings follow ``eval.tasks``: entries for
    tasks it does not name (``eval.tasks=[limo_aime24]`` under ``limo_paper_sampled``) are dropped
    with an info line naming them; an entry naming no limo_ task, or a task that runs with no
    ``eval.num_samples`` entry and no ``default``, is a ConfigError."""
    try:
        check_tasks(suite.tasks)
    except ValueError as e:
        raise ConfigError(f"eval.tasks: {e}") from None
    kept = require_evaluable(suite.tasks, suite.data_dir)
    _, skipped = resolve_tasks(suite.tasks, suite.data_dir)
    named, _ = resolve_tasks(suite.tasks, None)  # every leaf eval.tasks names, groups expanded
    dropped: dict[str, list[str]] = {}
    num_samples, dropped["eval.num_samples"] = _follow_tasks(
        "eval.num_samples", suite.num_samples, named, tasks(), keep=("default",)
    )
    bench = [benchmark_name(t) for t in tasks()]
    revision, dropped["eval.revision"] = _follow_tasks(
        "eval.revision", suite.revision, [benchmark_name(t) for t in named], bench
    )
    dropped = {k: v for k, v in dropped.items() if v}
    for key, names in dropped.items():
        log.info("%s: dropped the entries of %s (not in eval.tasks=%s)", key, ", ".join(names), suite.tasks)
    config = dataclasses.replace(suite, num_samples=num_samples, revision=revision)
    for leaf in kept:
        config.samples_for(leaf)  # a task that runs without an entry and no default: an error now
    return CheckedSuite(config, kept, skipped, dropped)


def _follow_tasks(key: str, entries, named: list[str], known, keep: tuple[str, ...] = ()):
    """``entries`` (a per-task dict, or anything else as it is) without the entries of known tasks
    that are not ``named``; and those dropped. An entry naming nothing known is a ConfigError."""
    if not isinstance(entries, dict):
        return entries, []
    unknown = sorted(set(entries) - set(known) - set(keep))
    if unknown:
        valid = ", ".join([*keep, *known])
        raise ConfigError(f"{key} names {unknown}, which this package has no task for (valid keys: {valid})")
    gone = [k for k in entries if k not in keep and k not in named]
    return {k: v for k, v in entries.items() if k not in gone}, gone


def benchmarks_for(suite: EvalConfig) -> dict[str, list[BenchItem]]:
    """The items of an evaluation suite, keyed by benchmark name: exactly those evaluated (same
    data_dir, GPQA seed and synthetic size), which is also what decontamination checks."""
    leaves, skipped = resolve_tasks(suite.tasks, suite.data_dir)
    for task, why in skipped.items():
        log.warning("not decontaminating against %s: %s", task, why)
    return {
        benchmark_name(t): benchmarks.load_benchmark(
            benchmark_name(t),
            suite.data_dir,
            gpqa_seed=suite.gpqa_seed,
            synthetic_n=suite.synthetic.n,
            synthetic_seed=suite.synthetic.seed,
            revision=(suite.revision or {}).get(benchmark_name(t)),
        )
        for t in leaves
    }


def benchmarks_fingerprint(items: dict[str, list[BenchItem]]) -> str:
    """Content of the benchmarks (ids, problems, gold answers, options) and the grader version:
    a corrected gold answer or a grading change gives a new run key."""
    from limo_exp.evaluation.grading import GRADER_VERSION

    blob = json.dumps({"grader": GRADER_VERSION, **{t: items_digest(items[t]) for t in sorted(items)}})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_source(task: str, data_dir: str | None) -> str:
    """Where a task's items come from, as logged: generated, the hub id and configs, or a file hash."""
    bench = benchmark_name(task)
    if bench == "synthetic" or benchmarks.SOURCES.get(bench, ("x",))[0] is None:  # arithmetic too
        return "generated"
    if data_dir is None:
        hub_id, parts, _ = benchmarks.SOURCES[bench]
        return f"hub:{hub_id} {[p for p, _ in parts]}"
    return "sha256:" + benchmarks.file_hash(bench, data_dir)
