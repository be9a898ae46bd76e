"""``limo-exp reproduce <run id | run key> [overrides] [--check] [--anyway]``: a run re-run from its
MLflow record, after checking what could make it come out differently.

    limo-exp reproduce 3f8e9c7d4d7a4102a5a03f5c7b79fad6 --check                 # the table, seconds
    limo-exp reproduce 3f8e9c7d4d7a4102a5a03f5c7b79fad6 tracking.uri=http://mlflow:5000

1. reads the run's record (config.yaml, tags, datasets, environment.txt, selected ids) from the store;
2. checks before any compute, one table: code, Python, packages (with the pip command), hardware
   (with what it changes), the pool and every benchmark re-read and fingerprinted (the items that
   differ named), the selection redone (``prepare``: the run's own preparation) and its ids compared;
   ``--check`` stops there; a data difference stops there too unless ``--anyway``;
3. reruns the recorded config (force=true, responses generated again: eval.store=off) into a new
   run tagged ``limo.reproduces=<run id>``, its files under ``<paths.output_root>/reproduce/``;
4. compares the two runs (``analysis.agreement``): identical / within noise / different.

Overrides may set where things are (paths, tracking, pool.data_dir, eval.data_dir: non-semantic
keys); one that changes what the run computes is refused. Bad input: one line, nothing written.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from limo_exp.analysis import checks
from limo_exp.config import ConfigError
from limo_exp.identity import RunSpec, is_semantic

REPRODUCES_TAG = "limo.reproduces"
FLAGS = ("--check", "--anyway")
USAGE = (
    "usage: limo-exp reproduce <run id | run key> [tracking.uri=...] [pool.data_dir=...] [--check] [--anyway]"
)


TODAY = (
    "paths",
    "tracking",
    "report",
    "study",
)  # composed as today; other overrides: leaves of the run's config


def today_config(overrides: list[str]):
    """The config tree composed as any command composes it, with the overrides of where things are
    today (paths, tracking) and of the report's statistics; the rest apply to the run's config."""
    from hydra import compose, initialize_config_dir

    from limo_exp import CONF_DIR

    mine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] in TODAY]
    with initialize_config_dir(config_dir=str(Path(CONF_DIR).resolve()), version_base="1.3"):
        return compose(config_name="config", overrides=mine)


def rerun_mapping(recorded: dict, today: dict, overrides: list[str], experiment: str) -> dict:
    """The recorded config with today's paths (the rerun's files under ``output_root/reproduce``) and
    tracking (into the run's experiment), the user's non-semantic overrides, force and no stored
    responses. A semantic override is refused: it would not be the run."""
    out = copy.deepcopy(recorded)
    out.pop("hydra", None)
    out["paths"] = dict(today["paths"], output_root=str(Path(today["paths"]["output_root"]) / "reproduce"))
    out["tracking"] = dict(today["tracking"], experiment=experiment)
    import yaml

    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key.split(".")[0] in TODAY:
            if key == "tracking.experiment":
                out["tracking"]["experiment"] = today["tracking"]["experiment"]
            continue
        if "." not in key or is_semantic(key):
            raise SystemExit(
                f"reproduce reruns the recorded config: {key} changes what the run computes (use limo-exp run)"
            )
        *groups, leaf = key.split(".")
        node = out
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = yaml.safe_load(value) if value else None  # a leaf: pool.data_dir, eval.store, ...
    out["force"] = True
    out.setdefault("eval", {})["store"] = "off"
    return out


def find_pool(spec: RunSpec, fingerprint: str, folders: list[str]) -> str | None:
    """A pool file with the run's fingerprint in one of ``folders`` (its file was moved or renamed)."""
    import dataclasses

    from limo_exp.data import pools
    from limo_exp.data.fingerprints import pool_fingerprint

    for folder in dict.fromkeys(f for f in folders if f and Path(f).is_dir()):
        for f in sorted(Path(folder).iterdir()):
            if f.suffix not in (".json", ".jsonl"):
                continue
            try:
                found = pools.load_pool_from_config(
                    dataclasses.replace(spec.config.pool, file=str(f.resolve()))
                )
            except (OSError, ValueError, KeyError):
                continue
            if pool_fingerprint(found) == fingerprint:
                return str(f.resolve())
    return None


def prepare_point(spec: RunSpec, mapping: dict, rec, overrides: list[str]):
    """The run's own preparation on today's data (``prepare.identify``); a pool file no longer at its
    recorded path is looked up by the run's fingerprint in ``pool.data_dir`` (set on the command line)
    and in the recorded folder, else one line names the key to set."""
    from limo_exp.commands import prepare

    c = spec.config
    try:
        prepare.check_eval(spec)
        return spec, prepare.identify(spec)
    except ConfigError as e:
        raise SystemExit(f"limo-exp reproduce: {e}") from None
    except FileNotFoundError as e:
        if "pool file" not in str(e):
            raise SystemExit(f"limo-exp reproduce: {e}") from None
        fp = rec.tags.get("limo.pool_fingerprint", "")
        asked = [o.split("=", 1)[1] for o in overrides if o.startswith("pool.data_dir=")]
        found = find_pool(spec, fp, [*asked, c.pool.data_dir]) if fp else None
        if found is None:
            raise SystemExit(
                f"the run's pool file is not here ({e}); no .json/.jsonl file in {[*asked, c.pool.data_dir]} has its "
                f"fingerprint {fp or '(not recorded)'}: set pool.data_dir=<the folder that holds it> (or pool.file=<path>)"
            ) from None
        print(f"pool: {e}; found by its fingerprint {fp}: {found}")
        mapping["pool"]["file"] = found
        spec = RunSpec.parse(mapping)
        prepare.check_eval(spec)
        return spec, prepare.identify(spec)


def data_checks(store, rec, spec: RunSpec, point) -> list[checks.Check]:
    """The pool, every benchmark (as evaluated: the first eval.limit items), the run key, the selection."""
    from limo_exp.commands import prepare
    from limo_exp.data.fingerprints import items_digest
    from limo_exp.evaluation import registry
    from limo_exp.tracking.names import RUN_KEY_TAG
    from limo_exp.tracking.run_log import training_digest

    c = spec.config
    out = [
        checks.items_check("pool", None, None, rec.tags.get("limo.pool_fingerprint", ""), point.fingerprint)
    ]
    samples = None
    for bench, items in sorted(point.benchmarks.items()):
        items = items[: c.eval.limit] if c.eval.limit else items
        logged = rec.dataset("evaluation", f"eval/{bench}")
        today = items_digest(items)
        recorded = None
        if logged is None or not today.startswith(logged.digest):
            samples = store.samples(rec.run_id) if samples is None else samples
            rows = [r for t, rs in samples.items() if registry.benchmark_name(t) == bench for r in rs]
            recorded = checks.recorded_items(rows) if rows else None
        out.append(checks.items_check(bench, recorded, items, logged.digest if logged else "", today))
    key = spec.key(point.fingerprint, registry.benchmarks_fingerprint(point.benchmarks))
    same = key == rec.tags.get(RUN_KEY_TAG)
    out.append(checks.Check("run key", checks.OK if same else checks.DIFFERS,
               key if same else f"{rec.tags.get(RUN_KEY_TAG)} (run) vs {key} (here): config or data content differs"))  # fmt: skip
    try:
        prepare.select(point)
    except ValueError as e:
        out.append(checks.Check("selection", checks.DIFFERS, f"the selection cannot be redone: {e}"))
        return out
    rows = [{"id": e.id, "problem": e.problem, "text": e.solution} for e in point.examples]
    sel = checks.selection(rec.selected_ids, [e.id for e in point.examples], rec.training_rows, rows)
    logged = rec.dataset("training")
    if sel.status == checks.OK and logged and not training_digest(point.examples).startswith(logged.digest):
        sel = checks.Check("selection", checks.DIFFERS, sel.detail + "; the training texts' digest differs")
    return [*out, sel]


def environment_checks(rec) -> list[checks.Check]:
    from limo_exp.tracking.environment import environment_tags, installed_distributions

    here = environment_tags()
    return [
        checks.code(rec.tags, here),
        checks.python(rec.tags, here),
        checks.packages(rec.environment, installed_distributions(), rec.tags),
        checks.hardware(rec.tags, here),
    ]


def reproduce(cfg, target: str, overrides: list[str], check_only: bool = False, anyway: bool = False) -> dict:
    """Check (and unless ``check_only``, rerun and compare) the run ``target`` names; ``cfg``: today's
    composed config. Returns the checks, and after a rerun its run id and the comparison."""
    from omegaconf import OmegaConf

    from limo_exp.commands.common import parse
    from limo_exp.tracking.names import KIND_TAG, mask
    from limo_exp.tracking.record import RecordStore

    today = OmegaConf.to_container(cfg, resolve=True)
    c = parse(cfg).config
    store = RecordStore(c.tracking.uri)
    rec = store.record(target)
    kind = rec.tags.get(KIND_TAG, "run")
    if kind != "run":
        raise SystemExit(f"run {rec.run_id} is a limo-exp {kind} run: reproduce reruns limo-exp run's runs")
    lacks = rec.missing()
    if "config.yaml" in lacks:
        raise SystemExit(
            f"run {rec.run_id} predates its config.yaml artifact: nothing to rerun (it lacks: {', '.join(lacks)})"
        )
    print(
        f"run {rec.run_id} ({rec.run.name}, {rec.run.status}) of study {rec.experiment!r} in {mask(store.uri)}"
    )
    if lacks:
        print(
            f"recorded before parts of the record existed; it lacks: {'; '.join(f'{k} ({v})' for k, v in lacks.items())}"
        )
    mapping = rerun_mapping(rec.config, today, overrides, rec.experiment)
    try:
        spec = RunSpec.parse(mapping)
    except ConfigError as e:
        raise SystemExit(f"the run's config.yaml does not parse with this checkout: {e}") from None
    spec, point = prepare_point(spec, mapping, rec, overrides)
    table = environment_checks(rec) + data_checks(store, rec, spec, point)
    print(checks.format_table(table))
    out = {"run_id": rec.run_id, "checks": table}
    data_differs = [
        t.facet for t in table if t.facet.startswith(("data:", "selection")) and t.status == checks.DIFFERS
    ]
    if check_only:
        return out
    if data_differs and not anyway:
        print(
            f"not rerunning: {', '.join(data_differs)} differ from the run's (--anyway reruns on today's data)"
        )
        return out | {"stopped": data_differs}
    return out | rerun_and_compare(store, rec, mapping, c.report)


def rerun_and_compare(store, rec, mapping: dict, opts) -> dict:
    """The recorded config run again in this process, tagged; the two runs compared (``opts``: today's
    ``report`` settings: alpha, level, resamples)."""
    from omegaconf import OmegaConf

    from limo_exp.analysis.agreement import compare_runs, format_agreement
    from limo_exp.commands import run as run_cmd

    print(
        f"rerunning {rec.run_id} (force=true, responses generated again) into study {mapping['tracking']['experiment']!r}"
    )
    done = run_cmd.run(OmegaConf.create(mapping))
    store.set_tags(done["run_id"], {REPRODUCES_TAG: rec.run_id})
    new = store.record(done["run_id"])
    res = compare_runs(rec, new, store.samples(rec.run_id), store.samples(new.run_id), opts)
    print(f"\nrun {rec.run_id} (A) vs its reproduction {new.run_id} (B):")
    print(format_agreement(res, opts.level))
    return {"new_run_id": new.run_id, "comparison": res}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a in FLAGS}
    rest = [a for a in args if a not in FLAGS]
    if not rest or "=" in rest[0] or rest[0].startswith("-"):
        raise SystemExit(USAGE)
    try:
        cfg = today_config(rest[1:])
    except Exception as e:  # a Hydra override error: one line
        raise SystemExit(f"limo-exp reproduce: {str(e).splitlines()[0]}") from None
    out = reproduce(cfg, rest[0], rest[1:], "--check" in flags, "--anyway" in flags)
    if out.get("stopped"):
        raise SystemExit(1)
