"""``limo-exp curate``: pool -> curated pool, funnel and contamination report on disk.

The only part of curation that reads ``cfg``; everything it calls takes plain arguments.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from limo_exp.curation.cache import curate_cached
from limo_exp.curation.config import CuratedPool, CurationConfig
from limo_exp.curation.stages import curate
from limo_exp.records import BenchItem

log = logging.getLogger(__name__)
OUTPUT_FILES = ("curated_pool.jsonl", "funnel.json", "contamination.jsonl")


def benchmark_name(task: str) -> str:
    """lm-eval task name -> benchmark name: ``limo_math500`` -> ``math500``."""
    return task.removeprefix("limo_")


def benchmarks_for(
    tasks: list[str], data_dir: str | None = None, eval_cfg: Any = None
) -> dict[str, list[BenchItem]]:
    """The benchmark items of an evaluation suite, keyed by benchmark name (what decontamination checks).

    Task groups expand (``limo_paper`` -> its six tasks); ``eval_cfg`` supplies ``gpqa_seed`` and
    ``synthetic.n`` / ``synthetic.seed`` so the items are exactly those evaluated.
    """
    from limo_exp.benchmarks import load_benchmark, resolve_tasks

    kw: dict[str, Any] = {}
    if eval_cfg is not None:
        pick = OmegaConf.select if isinstance(eval_cfg, DictConfig) else lambda c, k: _dig(c, k)
        for key, arg in (
            ("gpqa_seed", "gpqa_seed"),
            ("synthetic.n", "synthetic_n"),
            ("synthetic.seed", "synthetic_seed"),
        ):
            if pick(eval_cfg, key) is not None:
                kw[arg] = pick(eval_cfg, key)
    leaves, skipped = resolve_tasks(tasks, data_dir)
    for task, why in skipped.items():
        log.warning("not decontaminating against %s: %s", task, why)
    out: dict[str, list[BenchItem]] = {}
    for task in leaves:
        out[benchmark_name(task)] = load_benchmark(benchmark_name(task), data_dir, **kw)
    return out


def _dig(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def config_from(section: Any) -> CurationConfig:
    """CurationConfig from the ``curation`` config group (DictConfig or plain mapping)."""
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    return CurationConfig.from_dict(section)


def write_outputs(curated: CuratedPool, out_dir: str | Path) -> list[Path]:
    """Write curated_pool.jsonl, funnel.json and contamination.jsonl; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f for f in OUTPUT_FILES]
    with paths[0].open("w", encoding="utf-8") as f:
        for r in curated.records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    paths[1].write_text(
        json.dumps({"fingerprint": curated.fingerprint, "funnel": curated.funnel}, indent=2) + "\n"
    )
    with paths[2].open("w", encoding="utf-8") as f:
        for row in curated.contamination:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths


def format_funnel(funnel: list[dict[str, Any]]) -> str:
    """The funnel as an aligned text table: stage, in, out, dropped, notes."""
    head = f"{'stage':<12} {'in':>8} {'out':>8} {'dropped':>8}  notes"
    lines = [head, "-" * len(head)]
    for s in funnel:
        notes = ", ".join(
            f"{k}={v}" for k, v in s.items() if k not in ("stage", "in", "out") and k != "benchmarks"
        )
        lines.append(f"{s['stage']:<12} {s['in']:>8} {s['out']:>8} {s['in'] - s['out']:>8}  {notes}")
    return "\n".join(lines)


def _output_dir(cfg: DictConfig) -> Path:
    explicit = OmegaConf.select(cfg, "paths.output_dir")
    if explicit:
        return Path(explicit)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(os.getcwd()) / "curation"


def run_curate(cfg: DictConfig) -> dict[str, Any]:
    """Load cfg.pool, curate it with cfg.curation against the benchmarks of cfg.eval.tasks, print the
    funnel and write the three output files to paths.output_dir (else the Hydra run dir)."""
    from limo_exp.pools import load_pool_from_config, pool_fingerprint

    records = load_pool_from_config(OmegaConf.to_container(cfg.pool, resolve=True))
    benchmarks = benchmarks_for(list(cfg.eval.tasks), OmegaConf.select(cfg, "eval.data_dir"), cfg.eval)
    ccfg = config_from(cfg.curation)
    cache_dir = OmegaConf.select(cfg, "paths.cache_dir")
    if cache_dir:
        curated = curate_cached(records, ccfg, benchmarks, Path(cache_dir) / "curated")
    else:
        curated = curate(records, ccfg, benchmarks)
    print(
        f"pool {cfg.pool.name} ({pool_fingerprint(records)}), curation {ccfg.name}, "
        f"benchmarks {', '.join(f'{k}:{len(v)}' for k, v in benchmarks.items())}"
        + (" [cached]" if curated.from_cache else "")
    )
    print(format_funnel(curated.funnel))
    paths = write_outputs(curated, _output_dir(cfg))
    print(f"wrote {len(curated.records)} records and {len(curated.contamination)} flagged pairs:")
    for p in paths:
        print(f"  {p}")
    return {
        "pool": cfg.pool.name,
        "records_in": len(records),
        "records_out": len(curated.records),
        "contaminated": len({r["pool_id"] for r in curated.contamination}),
        "fingerprint": curated.fingerprint,
        "funnel": curated.funnel,
        "from_cache": curated.from_cache,
        **{p.stem.replace(".", "_") + "_path": str(p) for p in paths},
    }
