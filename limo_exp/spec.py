"""Run identity: the run key is a hash of the semantic config and the pool's and benchmarks' content.

Everything that changes what a run computes is in it; paths, tracking, the launcher and
``force`` are not, so moving the output folder or the MLflow server does not rerun a sweep.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

NON_SEMANTIC = ("paths", "tracking", "hydra", "force", "study", "debug", "experiment")
# where the pool and benchmarks are read from is not semantic either: their content is in the key
NON_SEMANTIC_LEAVES = ("eval.data_dir", "pool.data_dir")


def is_semantic(flat_key: str) -> bool:
    """Does a flattened config key (an MLflow param such as ``train.lr``) change what a run computes?"""
    return flat_key.split(".")[0] not in NON_SEMANTIC and flat_key not in NON_SEMANTIC_LEAVES


def semantic_config(cfg: DictConfig) -> dict:
    d = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_SEMANTIC:
        d.pop(key, None)
    for leaf in NON_SEMANTIC_LEAVES:
        group, key = leaf.split(".")
        if isinstance(d.get(group), dict):
            d[group].pop(key, None)
    return d


def run_key(cfg: DictConfig, pool_fingerprint: str, benchmarks_fingerprint: str = "") -> str:
    """Hash of the semantic config, the pool's content and the benchmarks' content."""
    blob = json.dumps(
        {"config": semantic_config(cfg), "pool": pool_fingerprint, "benchmarks": benchmarks_fingerprint},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
