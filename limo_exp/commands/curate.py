"""``limo-exp curate``: pool -> curated pool, funnel and contamination report on disk.

limo-exp curate pool=math_train pool.data_dir=../shared/data/pools eval=limo_paper eval.data_dir=../shared/data/eval
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from limo_exp.commands.common import command, hydra_output_dir, parse


def run_curate(cfg: DictConfig) -> dict[str, Any]:
    """Load the pool, curate it against the benchmarks of eval.tasks, print the funnel and write
    the three output files to paths.output_dir (else the Hydra run folder)."""
    from limo_exp import curation
    from limo_exp.data.fingerprints import pool_fingerprint
    from limo_exp.data.pools import load_pool_from_config
    from limo_exp.evaluation import registry

    c = parse(cfg).config
    records = load_pool_from_config(c.pool)
    benchmarks = registry.benchmarks_for(c.eval)
    if c.paths.cache_dir:
        curated = curation.curate_cached(records, c.curation, benchmarks, Path(c.paths.cache_dir) / "curated")
    else:
        curated = curation.curate(records, c.curation, benchmarks)
    print(
        f"pool {c.pool.name} ({pool_fingerprint(records)}), curation {c.curation.name}, "
        f"benchmarks {', '.join(f'{k}:{len(v)}' for k, v in benchmarks.items())}"
        + (" [cached]" if curated.from_cache else "")
    )
    print(curation.format_funnel(curated.funnel))
    out_dir = c.paths.output_dir or hydra_output_dir() or os.path.join(os.getcwd(), "curation")
    paths = curation.write_outputs(curated, out_dir)
    print(f"wrote {len(curated.records)} records and {len(curated.contamination)} flagged pairs:")
    for p in paths:
        print(f"  {p}")
    return {
        "pool": c.pool.name,
        "records_in": len(records),
        "records_out": len(curated.records),
        "contaminated": len({r["pool_id"] for r in curated.contamination}),
        "fingerprint": curated.fingerprint,
        "funnel": curated.funnel,
        "from_cache": curated.from_cache,
        **{p.stem.replace(".", "_") + "_path": str(p) for p in paths},
    }


main = command(run_curate)
