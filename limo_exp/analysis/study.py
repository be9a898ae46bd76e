"""A study read back for analysis: the runs (a DataFrame), their graded samples per problem, and
the points of its curves (one setting at one N, its seeds together).

    study = load_study(tracking, cache_dir, labels=conf_labels())
    for pt in study.points(): pt.setting, pt.n, pt.run_ids, pt.label()   # "answer only" for answer_only
    study.array(pt.run_ids, "limo_math500")   # seeds x problems x samples, problems aligned

Settings are shown by their labels (``limo_exp.analysis.labels``), ids where none is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from limo_exp.analysis.labels import logged_labels
from limo_exp.config import TrackingConfig
from limo_exp.identity import is_semantic
from limo_exp.tracking.runs import SampleScores, open_store, runs_frame, sample_scores

AXES = ("seed", "data.n_samples")  # a curve's x axis and the spread of each point
# settings of a run that are not what a curve varies: its cost and outcome, and the fixed protocol
NOT_SETTINGS = ("eval/", "train/", "cost/", "curation/")


@dataclass(frozen=True)
class Point:
    """One setting (values of the setting columns) at one N; its runs differ only by seed."""

    setting: tuple[str, ...]
    n: int
    run_ids: tuple[str, ...]
    kind: str  # run | eval (an untrained baseline, N = 0)
    names: tuple[str, ...] = ()  # the setting as tables show it (labels); empty: the ids

    def label(self) -> str:
        parts = list(dict.fromkeys(self.names or self.setting))  # quality.name and .tier often agree: once
        return " / ".join(parts) or "all runs"


@dataclass
class Study:
    name: str
    frame: object  # pandas DataFrame, one row per FINISHED run (runs_frame)
    scores: dict[str, SampleScores]  # run id -> graded samples
    tags: dict[str, dict[str, str]]  # run id -> its MLflow tags
    labels: dict[str, str] = field(default_factory=dict)  # id -> what tables call it (analysis.labels)

    @property
    def settings(self) -> list[str]:
        return setting_columns(self.frame)

    def tasks(self) -> list[str]:
        """Benchmarks with graded samples, in the order of their metric columns."""
        found = {t for s in self.scores.values() for t in s.scores}
        return sorted(found)

    def points(self, kind: str | None = None) -> list[Point]:
        df = self.frame
        cols = self.settings
        out = []
        for k in ("eval", "run") if kind is None else (kind,):
            sub = df[df["kind"] == k]
            if sub.empty:
                continue
            if k == "eval" and "model.name" in sub.columns:
                by = ["model.name"]
            else:  # one setting only: its tier names the rows
                by = cols or [c for c in ("quality.name",) if c in sub.columns]
            by = by + ["data.n_samples"]
            keys = axis_names(by[:-1])
            for key, g in sub.groupby(by, sort=True, dropna=False):
                key = key if isinstance(key, tuple) else (key,)
                setting = tuple(str(v) for v in key[:-1])
                names = tuple(self.shown(col, v) for col, v in zip(keys, setting))
                out.append(Point(setting, int(key[-1]), tuple(g.sort_values("seed")["run_id"]), k, names))
        return out

    def label(self, id_: str) -> str:
        """What tables call a model, tier or other setting value: its label, else the id itself."""
        return self.labels.get(id_, id_)

    def shown(self, key: str | None, value: str) -> str:
        """A setting's value as tables and curves show it: a group's choice by its label (``long CoT``),
        any other axis as ``key=value`` (``answers_per_question=4``; ``key``: from ``axis_names``)."""
        return self.label(value) if key is None else f"{key}={value}"

    def answered(self, run_ids, task: str) -> float | None:
        """Share of responses with an extractable answer (1 - ``eval/<task>/no_answer``), over the
        runs; None where the evaluation did not track it."""
        col = f"eval/{task}/no_answer"
        if col not in self.frame.columns:
            return None
        vals = self.frame.set_index("run_id").loc[list(run_ids), col].dropna()
        return None if vals.empty else float(1.0 - vals.mean())

    def array(self, run_ids, task: str, items: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Per-problem correctness of ``run_ids`` on ``task``: seeds x problems x samples, on the
        problems every run evaluated (or ``items``), in a fixed order."""
        per_run = [self.scores[r].scores.get(task, {}) for r in run_ids]
        if items is None:
            common = set.intersection(*(set(s) for s in per_run)) if per_run else set()
            items = sorted(common)
        if not items:
            return np.zeros((len(per_run), 0, 1)), []
        k = min(len(s[i]) for s in per_run for i in items)
        return np.array([[s[i][:k] for i in items] for s in per_run], dtype=float), items

    def per_problem(self, run_ids, task: str, items: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Mean correctness per problem over seeds and samples (what the paired tests compare)."""
        a, items = self.array(run_ids, task, items)
        return a.mean(axis=(0, 2)), items

    def paired(self, a, b, task: str, opts) -> dict | None:
        """``stats.paired`` of two sets of runs on the problems both evaluated (None: none shared)."""
        from limo_exp.analysis import stats

        both = sorted(set(self.per_problem(a, task)[1]) & set(self.per_problem(b, task)[1]))
        if not both:
            return None
        pa, pb = self.per_problem(a, task, both)[0], self.per_problem(b, task, both)[0]
        return stats.paired(pa, pb, n_boot=opts.n_boot, level=opts.level, seed=opts.seed)

    def source_ids(self, run_id: str, task: str) -> dict[str, str]:
        return self.scores[run_id].source_ids.get(task, {})


def setting_columns(df) -> list[str]:
    """The config params that differ between the fine-tuned runs (N and seed aside): one curve
    each. Runs that differ in anything but the seed are never averaged together."""
    tuned = df[df["kind"] == "run"]
    params = [c for c in df.columns if "." in c and not c.startswith(NOT_SETTINGS)]
    return [c for c in params if is_semantic(c) and c not in AXES and tuned[c].astype(str).nunique() > 1]


NAMED = ("model.name", "pool.name", "quality.name", "quality.tier", "selection.strategy", "train.name")
NAMED += ("eval.name", "curation.name")  # columns whose values name themselves (and have labels)


def axis_names(columns: list[str]) -> list[str | None]:
    """How each setting column names its values: None for a group's choice (``NAMED``: shown by
    its label), else the shortest tail of its key that no other column shares
    (``data.answers_per_question`` -> ``answers_per_question``; two members' weights ->
    ``gsm8k.weight``, ``aime.weight``)."""
    out: list[str | None] = []
    for col in columns:
        if col in NAMED:
            out.append(None)
            continue
        parts = col.split(".")
        for i in range(len(parts) - 1, -1, -1):
            tail = ".".join(parts[i:])
            if not any(o != col and (o == tail or o.endswith("." + tail)) for o in columns):
                break
        out.append(tail)
    return out


HELD = ("model.name", "pool.name", "quality.name", "selection.strategy", "train.name", "eval.tasks")


def held_fixed(df) -> dict[str, str]:
    """The study's defining settings that every fine-tuned run shares (model, pool, solution tier,
    selection strategy, recipe, benchmarks): what a reader must know that no column shows."""
    tuned = df[df["kind"] == "run"]
    return {
        c: str(tuned[c].iloc[0])
        for c in HELD
        if c in tuned.columns and len(tuned) and tuned[c].nunique() == 1
    }


def missing_control(df) -> str | None:
    """Strategies compared without ``random`` (the control every less-is-more claim needs): a
    sentence saying so, else None."""
    tuned = df[df["kind"] == "run"]
    if "selection.strategy" not in tuned.columns:
        return None
    used = set(tuned["selection.strategy"].dropna().astype(str))
    if used and "random" not in used:
        return (
            f"no run uses selection.strategy=random: {', '.join(sorted(used))} cannot be told apart from "
            "what N alone does; add the random control from the same pool (sweeps/selection_strategies.yaml)"
        )
    return None


def load_study(
    tracking: TrackingConfig, cache_dir: str | Path, labels: dict[str, str] | None = None
) -> Study:
    """Every FINISHED run of the study and its graded samples (downloaded once into ``cache_dir``).
    Settings are shown by their label: ``labels`` over the labels the runs logged, else the id."""
    df = runs_frame(tracking)
    tags = dict(df.attrs.get("tags", {}))
    if "seed" not in df.columns:
        df["seed"] = "0"
    df["seed"] = df["seed"].fillna("0")
    store = open_store(tracking)
    cache = Path(cache_dir)
    scores = {r: sample_scores(store, r, cache) for r in df["run_id"]}
    return Study(tracking.experiment, df, scores, tags, logged_labels(df) | dict(labels or {}))
