"""Run identity: ``RunSpec`` (a parsed config and the resolved mapping it came from) and
``run_key``, the hash of the *semantic* part of the resolved config (all but paths, tracking, the
launcher and ``force``) with the pool's and the benchmarks' content. It is computed on the config
as composed, not on the dataclasses, so a default added to ``limo_exp.config`` never changes a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limo_exp.config import Config
from limo_exp.typed import flatten

NON_SEMANTIC = ("paths", "tracking", "hydra", "force", "study", "debug", "experiment", "report", "accelerate")
NON_SEMANTIC += (
    "distill",
    "plan",
)  # limo-exp distill's own settings: a distilled pool's content is in the key
# nor where the pool and benchmarks are read from (their content is in the key), nor when states are saved
NON_SEMANTIC_LEAVES = ("eval.data_dir", "pool.data_dir", "train.checkpoint_every", "train.keep_states")
NON_SEMANTIC_LEAVES += ("train.keep_states_at_end", "train.save", "eval.store")  # neither changes a result
NON_SEMANTIC_LEAVES += ("train.liger_layers",)  # the same layers in fused kernels: equal to rounding
NON_SEMANTIC_LEAVES += ("train.checkpoint_skip_layers",)  # recomputed or kept: the same activations
NON_SEMANTIC_LEAVES += ("eval.max_batch_size",)  # static/compiled decoding: a sample is not its batch's
NON_SEMANTIC_LEAVES += ("eval.vllm_kv_cache_gb", "eval.vllm_gpu_memory_utilization")  # memory, not results
NON_SEMANTIC_LEAVES += ("eval.vllm_max_model_len",)
NON_SEMANTIC_LEAVES += ("eval.data_parallel_size",)  # engines side by side: a response is its request's
NON_SEMANTIC_LEAVES += (
    "model.shape",
)  # what plan reads without the hub; the model is its id  # a budget it cannot hold fails, it never changes one
NON_SEMANTIC_LEAVES += ("model.label", "quality.label")  # what tables call a model or a tier
EVAL_ONLY_GROUPS = ("model", "eval", "seed")  # what an evaluation without training depends on
# Leaves added after runs existed, with the value that computes what those runs did: at that value
# the leaf, and the leaves read only at other values of it, stay out of the key, so the runs made
# before the leaf existed keep their keys (and are skipped by a relaunch). Any other value is keyed.
NEUTRAL_LEAVES = {"train.format": ("plain", ("train.answer_prefix", "train.explain_prefix"))}
# greedy responses are the same whatever decodes them; a sampled one records its decoding
NEUTRAL_LEAVES["eval.hf_decoding"] = ("auto", ())
# the axes of issue 36 (at these values a run trains on what it did before they existed)
NEUTRAL_LEAVES["data.answers_per_question"] = (1, ())
NEUTRAL_LEAVES["data.min_answers"] = (None, ())
NEUTRAL_LEAVES["curation.verify.mode"] = ("kept", ())
NEUTRAL_LEAVES |= {f"quality.{k}": (None, ()) for k in ("truncate", "min_words", "max_words")}


def is_semantic(flat_key: str) -> bool:
    """Does a flattened config key (an MLflow param such as ``train.lr``) change what a run computes?"""
    leaf = ".".join(flat_key.split(".")[:2])  # model.shape.hidden_size -> model.shape
    return flat_key.split(".")[0] not in NON_SEMANTIC and leaf not in NON_SEMANTIC_LEAVES


def semantic_config(resolved: Mapping[str, Any]) -> dict:
    d = json.loads(json.dumps(dict(resolved), default=str))  # a deep copy
    for key in NON_SEMANTIC:
        d.pop(key, None)
    for leaf in NON_SEMANTIC_LEAVES:
        group, key = leaf.split(".")
        if isinstance(d.get(group), dict):
            d[group].pop(key, None)
    for leaf, (neutral, companions) in NEUTRAL_LEAVES.items():
        *path, key = leaf.split(".")
        if isinstance(at := _node(d, path), dict) and at.get(key, neutral) == neutral:
            for gone in (leaf, *companions):
                *path, key = gone.split(".")
                if isinstance(at := _node(d, path), dict):
                    at.pop(key, None)
    return d


def _node(d: dict, path: list[str]):
    for part in path:
        d = d.get(part) if isinstance(d, dict) else None
    return d


def with_neutral_leaves(params: Mapping[str, str]) -> dict[str, str]:
    """MLflow params as if every run had been logged today: a neutral leaf a run predates gets its
    neutral value, and at that value its companions are dropped, so a run from before the leaf and
    one logged with it at the neutral value show the same setting (one curve in a report)."""
    out = dict(params)
    for leaf, (neutral, companions) in NEUTRAL_LEAVES.items():
        out.setdefault(leaf, str(neutral))  # as MLflow logs it: 1 -> "1", None -> "None"
        if out[leaf] == str(neutral):
            for gone in companions:
                out.pop(gone, None)
    return out


def run_key(resolved: Mapping[str, Any], pool_fingerprint: str, benchmarks_fingerprint: str = "") -> str:
    """Hash of the semantic config, the pool's content and the benchmarks' content."""
    blob = json.dumps(
        {"config": semantic_config(resolved), "pool": pool_fingerprint, "benchmarks": benchmarks_fingerprint},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class RunSpec:
    """A parsed, checked config (``config``) and the resolved mapping it came from (``resolved``)."""

    config: Config
    resolved: dict[str, Any]

    @classmethod
    def parse(cls, resolved: Mapping[str, Any]) -> RunSpec:
        resolved = {k: v for k, v in resolved.items() if k != "hydra"}
        return cls(Config.from_dict(resolved, ""), resolved)

    def key(self, pool_fingerprint: str, benchmarks_fingerprint: str) -> str:
        """The run key of training on this config (``limo-exp run``)."""
        return run_key(self.resolved, pool_fingerprint, benchmarks_fingerprint)

    def eval_key(self, benchmarks_fingerprint: str) -> str:
        """The run key of evaluating the base model alone (``limo-exp eval``): model, eval, seed."""
        only = {k: self.resolved[k] for k in EVAL_ONLY_GROUPS if k in self.resolved}
        return run_key(only, "eval-only", benchmarks_fingerprint)

    def params(self, groups: tuple[str, ...] | None = None) -> dict[str, str]:
        """The flattened config as MLflow params (all groups, or ``groups`` only)."""
        d = self.resolved if groups is None else {k: self.resolved[k] for k in groups if k in self.resolved}
        return flatten(d)
