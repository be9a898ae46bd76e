"""Hub data sets and models: loaded by id (``datasets`` imported only then), pinned to a revision
when one is given, and recorded: which commit (and how many rows) every hub load read, per run.

    with recording():   # one run: what it loads is its own, not the process's earlier points'
        rows = load("Maxwell-Jia/AIME_2024", None, "train", revision=None)
        record_model("Qwen/Qwen2.5-7B-Instruct", "main")   # a model's commit: the local cache, else the hub
        loaded()   # [{"repo", "config", "split", "revision", "rows"}] for the run to log
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

_LOADED: dict[tuple, dict[str, Any]] = {}  # outside any recording: what this process loaded
_RECORDINGS: list[dict[tuple, dict[str, Any]]] = []  # the open recordings, innermost last


@contextmanager
def recording():
    """Collect the hub loads of one run (a multirun runs several in one process): inside, ``loaded()``
    is what was loaded since the block began, and nothing else."""
    found: dict[tuple, dict[str, Any]] = {}
    _RECORDINGS.append(found)
    try:
        yield found
    finally:
        _RECORDINGS.remove(found)


def _record(key: tuple, entry: dict[str, Any]) -> None:
    for found in (_LOADED, *_RECORDINGS):
        found[key] = entry


@cache  # one question per repo and revision (AIME 2025's two configs share a repo)
def resolve_revision(repo: str, revision: str | None) -> str:
    """The commit sha a revision (a branch, tag or sha; None: the default branch) points to, or
    "unresolved" when the hub cannot be asked (offline)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo, revision=revision).sha or "unresolved"
    except Exception:  # offline, gated, or no huggingface_hub: record what was asked for
        return f"{revision or 'default'} (unresolved)"


def load(repo: str, config: str | None, split: str, revision: str | None = None):
    """``datasets.load_dataset(repo, config, split=split[, revision=...])``, recorded in ``loaded()``."""
    import datasets

    kw = {"revision": revision} if revision else {}
    ds = datasets.load_dataset(repo, config, split=split, **kw)
    entry = {"repo": repo, "config": config, "split": split, "revision": resolve_revision(repo, revision)}
    _record((repo, config, split), entry | {"rows": len(ds)})
    return ds


def model_commit(repo: str, revision: str | None) -> str:
    """The commit a model revision (None: the default branch) points to: the snapshot folder the
    local cache holds for it (offline), else the hub's answer, else "<revision> (unresolved)"."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo, "config.json", revision=revision)  # .../snapshots/<sha>/...
        if isinstance(path, str):
            return Path(path).parent.name
        from huggingface_hub import HfApi

        return HfApi().model_info(repo, revision=revision).sha or "unresolved"
    except Exception:  # offline and not cached, gated, or no huggingface_hub
        return f"{revision or 'default'} (unresolved)"


def record_model(repo: str, revision: str | None) -> str:
    """Record the commit of a hub model this process reads (tagged ``limo.hub.<repo>``)."""
    sha = model_commit(repo, revision)
    _record((repo, None, None), {"repo": repo, "config": None, "split": None, "revision": sha, "rows": None})
    return sha


def loaded() -> list[dict[str, Any]]:
    """Every hub data set and model loaded in the innermost open ``recording`` (outside one: by
    this process), with its commit and row count."""
    return list((_RECORDINGS[-1] if _RECORDINGS else _LOADED).values())


def as_tags(entries: list[dict[str, Any]]) -> dict[str, str]:
    """``limo.hub.<repo>[/<config>]/<split>`` -> ``<sha> rows=<n>`` (a data set), ``limo.hub.<repo>``
    -> ``<sha>`` (a model): what a run logs."""
    out = {}
    for e in entries:
        name = "/".join(x for x in (e["repo"], e["config"], e["split"]) if x)
        out[f"limo.hub.{name}"] = e["revision"] + ("" if e["rows"] is None else f" rows={e['rows']}")
    return out


@contextmanager
def offline():
    """Within: hub data sets and models are read from the local cache only, never asked of the
    network (``limo-exp plan`` answers in seconds, whatever the network does)."""
    import datasets
    import huggingface_hub.constants as hf

    kept = datasets.config.HF_HUB_OFFLINE, hf.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hf.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hf.HF_HUB_OFFLINE = kept
