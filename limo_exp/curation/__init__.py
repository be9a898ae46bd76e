"""From a raw pool to trustworthy training records: verify, deduplicate, decontaminate, band, score.

curated = curate(records, CurationConfig.from_dict(...), benchmarks)   # or curate_cached(..., cache_dir)
write_outputs(curated, out_dir)   # curated_pool.jsonl, funnel.json, contamination.jsonl
"""

from limo_exp.curation.cache import benchmarks_fingerprint, cache_key, curate_cached
from limo_exp.curation.config import (
    CuratedPool,
    CurationConfig,
    DecontamConfig,
    DedupConfig,
    DifficultyConfig,
    QualityConfig,
    VerifyConfig,
)
from limo_exp.curation.run import benchmarks_for, config_from, format_funnel, run_curate, write_outputs
from limo_exp.curation.stages import curate

__all__ = [
    "CuratedPool",
    "CurationConfig",
    "DecontamConfig",
    "DedupConfig",
    "DifficultyConfig",
    "QualityConfig",
    "VerifyConfig",
    "benchmarks_fingerprint",
    "benchmarks_for",
    "cache_key",
    "config_from",
    "curate",
    "curate_cached",
    "format_funnel",
    "run_curate",
    "write_outputs",
]
