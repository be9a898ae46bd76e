"""Curation: from a raw pool to trustworthy training records (verify, deduplicate, decontaminate,
difficulty band, reasoning-chain scores), pure stages plus a file-locked cache.

    curated = curate(records, CurationConfig.from_dict(...), benchmarks)   # or curate_cached(..., cache_dir)
    write_outputs(curated, out_dir)   # curated_pool.jsonl, funnel.json, contamination.jsonl

The settings are ``limo_exp.config.CurationConfig`` (the ``curation`` config group).
"""

from limo_exp.curation.cache import cache_key, curate_cached
from limo_exp.curation.outputs import CuratedPool, format_funnel, write_outputs
from limo_exp.curation.stages import curate

__all__ = ["CuratedPool", "cache_key", "curate", "curate_cached", "format_funnel", "write_outputs"]
