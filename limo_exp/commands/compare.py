"""``limo-exp compare A B [overrides]``: two runs, or two settings of one study, on the problems
both evaluated: accuracies, the paired difference with its interval, the exact McNemar (or
paired permutation) p-value, problems only one side solved, items only one side has.

    limo-exp compare 3f8e9c7d4d7a4102a5a03f5c7b79fad6 1d385158b312467dab976a295a103ca4 experiment=demo
    limo-exp compare "quality.name=long;data.n_samples=64" "quality.name=short;data.n_samples=64" experiment=demo

A and B: a run id, a run key, or param=value[;param=value] (several matching runs must differ
only by seed; they are averaged per problem). Writes results/<study>/compare/<a>_vs_<b>.{md,json}.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from limo_exp.commands.common import command, parse


def run_compare(cfg: DictConfig) -> dict:
    from limo_exp.analysis.compare import CompareError, compare, format_comparison, write_comparison
    from limo_exp.analysis.study import load_study

    c = parse(cfg).config
    opts = c.report
    if not opts.a or not opts.b:
        raise SystemExit(
            "usage: limo-exp compare A B [overrides]  (A, B: run id, run key or param=value[;...])"
        )
    study = load_study(c.tracking, Path(c.paths.cache_dir) / "samples")
    try:
        res = compare(study, opts.a, opts.b, opts)
    except CompareError as e:
        raise SystemExit(f"compare: {e}") from None
    text = format_comparison(res, opts.level, opts.alpha)
    files = write_comparison(res, text, Path(c.paths.results_dir) / c.tracking.experiment / "compare")
    print(text)
    print(f"written: {files[1]} and {files[0].name}")
    return res


main = command(run_compare)
