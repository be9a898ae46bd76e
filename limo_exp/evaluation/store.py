"""Every generated response stored once, keyed by (model weights fingerprint, prompt, generation
settings, sample index), so that re-running an evaluation, raising n from 8 to 64 or adding a
benchmark generates only what is missing.

One JSON Lines file per model fingerprint (``<store dir>/<fingerprint>.jsonl``), appended and
flushed as generations finish: a killed evaluation keeps what it generated. A line cut short by
a kill is named and dropped (the file is rewritten without it) and its sample generated again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
HASHED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
_EDGE = 1 << 20  # bytes hashed at each end of a weight file


class StoreMismatch(ValueError):
    """A response store holds responses of another model."""


def model_fingerprint(model_path: str, revision: str | None = None) -> str:
    """A cheap, content-derived id of a model's weights: for a local folder, the sha256 of each
    weight file's name, size and first and last MiB plus the config and tokenizer files; for a
    hub id, the id and revision (the hub's commit pins the weights)."""
    root = Path(model_path)
    if not root.is_dir():
        return hashlib.sha256(f"hub:{model_path}@{revision or 'default'}".encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if f.suffix in WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{rel}:{size}".encode())
            with f.open("rb") as fh:
                h.update(fh.read(_EDGE))
                if size > 2 * _EDGE:
                    fh.seek(-_EDGE, os.SEEK_END)
                    h.update(fh.read(_EDGE))
        elif f.name in HASHED_FILES:
            h.update(rel.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def request_key(model_fp: str, prompt: str, settings: dict, sample: int) -> str:
    blob = json.dumps([model_fp, prompt, settings, sample], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class Stored:
    """One generation: the text, its token count, how it ended (``stop``: end of turn or a stop
    string; ``length``: the budget ran out) and, under budget forcing, its phases."""

    response: str
    n_tokens: int
    finish: str
    think_tokens: int | None = None
    waits: int = 0
    forced: bool = False  # budget forcing cut the thinking at its budget
    seconds: float | None = None  # generation time (its share of the batch's, by tokens): the cost
    decoding: str | None = None  # the engine and decoding that wrote it (hf/compiled, hf/eager, vllm/vllm)


class ResponseStore:
    def __init__(self, folder: str | Path, model_fp: str):
        self.path = Path(folder) / f"{model_fp}.jsonl"
        self.model_fp = model_fp
        self.records: dict[str, Stored] = {}
        self.hits = self.added = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        good, bad = [], []
        for i, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                rec = json.loads(line)
                key, model = rec.pop("key"), rec.pop("model")
                stored = Stored(**rec)
            except (json.JSONDecodeError, KeyError, TypeError):
                bad.append(i)
                continue
            if model != self.model_fp:
                raise StoreMismatch(
                    f"{self.path}:{i} holds a response of model {model}, not of {self.model_fp}: a store "
                    "belongs to one model's weights (use another eval.store folder)"
                )
            self.records[key] = stored
            good.append(line)
        if bad:
            log.warning(
                "response store %s: line(s) %s unreadable (cut short by a kill?): dropped, regenerated",
                self.path,
                ", ".join(map(str, bad)),
            )
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(g + "\n" for g in good))
            tmp.replace(self.path)

    def get(self, key: str) -> Stored | None:
        hit = self.records.get(key)
        self.hits += hit is not None
        return hit

    def add(self, items: list[tuple[str, Stored]]) -> None:
        """Append and flush: what is written survives a kill of the process."""
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for key, s in items:
                f.write(json.dumps({"key": key, "model": self.model_fp, **s.__dict__}) + "\n")
                self.records[key] = s
            f.flush()
            os.fsync(f.fileno())
        self.added += len(items)


class NoStore(ResponseStore):
    """``eval.store=off``: responses live in memory for one evaluation, nothing is written."""

    def __init__(self, model_fp: str = ""):
        self.path, self.model_fp, self.records, self.hits, self.added = None, model_fp, {}, 0, 0

    def add(self, items: list[tuple[str, Stored]]) -> None:
        self.records.update(items)
        self.added += len(items)


def response_store(setting: str, auto_dir: str | Path | None, model_fp: str) -> ResponseStore:
    """The store a setting (``eval.store``, ``distill.store``) names: ``auto`` -> ``auto_dir`` (none
    when that is None), ``off`` -> none (responses live in memory), else the folder given."""
    folder = auto_dir if setting == "auto" else None if setting == "off" else setting
    return ResponseStore(folder, model_fp) if folder else NoStore(model_fp)
