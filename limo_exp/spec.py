"""Run identity: the run key is a hash of the semantic config and the pool's and benchmarks' content.

Everything that changes what a run computes is in it; paths, tracking, the launcher and
``force`` are not, so moving the output folder or the MLflow server does not rerun a sweep.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

NON_SEMANTIC = ("paths", "tracking", "hydra", "force", "study", "debug", "experiment")


def semantic_config(cfg: DictConfig) -> dict:
    d = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_SEMANTIC:
        d.pop(key, None)
    # where the pool and benchmarks are read from is not semantic: their content is in the key
    if isinstance(d.get("eval"), dict):
        d["eval"].pop("data_dir", None)
    if isinstance(d.get("pool"), dict):
        d["pool"].pop("data_dir", None)
    return d


def run_key(cfg: DictConfig, pool_fingerprint: str, benchmarks_fingerprint: str = "") -> str:
    """Hash of the semantic config, the pool's content and the benchmarks' content."""
    blob = json.dumps(
        {"config": semantic_config(cfg), "pool": pool_fingerprint, "benchmarks": benchmarks_fingerprint},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
