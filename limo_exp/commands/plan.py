"""``limo-exp plan <the overrides of run> [--multirun]``: the sweep composed as ``run --multirun``
would, each point prepared as ``run`` prepares it (pool, run key, curation, selection, the
tokenised rows) without loading a model, priced in device-hours and memory, and the benchmarks'
power; printed, and written as plan.md / plan.json in the sweep folder. Makes no MLflow run.

The grid is Hydra's basic sweeper's: the sweep file's ``hydra.sweeper.params`` and the command
line's comma lists, the command line winning for a key both set, in that order, as a product.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from limo_exp.config import ConfigError

log = logging.getLogger("limo_exp")
MULTIRUN = ("--multirun", "-m")


def grid(overrides: list[str], params: dict | None) -> list[list[str]]:
    """Each point's overrides: the fixed ones, then one value of every swept axis."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed, axes = [], {}
    for key, value in (params or {}).items():
        for o in parser.parse_overrides([f"{key}={value}"]):
            axes[o.get_key_element()] = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
    for o in parser.parse_overrides(overrides):
        if o.is_sweep_override():
            axes[o.get_key_element()] = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        else:
            axes.pop(o.get_key_element(), None)
            fixed.append(o.input_line)
    return [fixed + list(point) for point in itertools.product(*axes.values())] or [fixed]


def make_plan(overrides: list[str]):
    """The plan of ``limo-exp run --multirun <overrides>`` (or of one run when nothing is swept)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from limo_exp import CONF_DIR

    if GlobalHydra.instance().is_initialized():  # in run --multirun's callback: its search path
        return _make_plan(overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return _make_plan(overrides)


def _make_plan(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from limo_exp.analysis import plan as P
    from limo_exp.commands import plan_points
    from limo_exp.commands.common import parse
    from limo_exp.data import hub

    plan_points.forget()  # a new plan reads the pools and suites again
    parsed = OverridesParser.create().parse_overrides(overrides)
    base = plan_points.compose([o.input_line for o in parsed if not o.is_sweep_override()], hydra_config=True)
    swept = base.hydra.sweeper.params
    params = OmegaConf.to_container(swept, resolve=False) if swept else {}
    points = grid(overrides, params)
    first = parse(OmegaConf.masked_copy(base, [k for k in base if k != "hydra"])).config
    opts = first.plan
    history, tracker, warnings = _history(first)
    device, gpus = _device(opts.device, first.accelerate, warnings), _gpus(opts.gpus, first.accelerate)
    names = _point_names(points, overrides)
    plans, cfgs = [], []
    with hub.offline():  # the local cache only: a plan takes seconds, whatever the network does
        for name, point in zip(names, points):
            p, c = plan_points.point_plan(name, point, device, gpus, history, tracker, warnings)
            plans.append(p)
            cfgs.append(c)
    detect = plan_points.detect(plans, cfgs, opts, history, warnings)
    plan = P.Plan(first.study, device, gpus, plans, detect, _grouped(warnings, len(points)), _settings(opts))
    if opts.max_gpu_hours is not None and plan.hours is not None and plan.hours > opts.max_gpu_hours:
        plan.warnings.append(
            f"the sweep needs {P.hours_text(plan.hours)} {device}-hours, over plan.max_gpu_hours={opts.max_gpu_hours}"
        )
    return plan, base


def _grouped(warnings: list, n_points: int) -> list[str]:
    """Warnings in order, those of points (``(point, text)``) once a text, naming the points."""
    out, at = [], {}
    for w in warnings:
        if isinstance(w, str):
            out.append(w)
            continue
        name, text = w
        if text not in at:
            at[text] = len(out)
            out.append([text])
        out[at[text]].append(name)
    for i, w in enumerate(out):
        if isinstance(w, list):
            names = w[1:]
            which = f"all {n_points} points" if len(names) == n_points > 1 else "; ".join(names)
            out[i] = f"{which}: {w[0]}"
    return out


def _settings(opts) -> dict:
    keys = ("power", "alpha", "wanted_difference", "mfu", "bandwidth_use", "max_gpu_hours")
    return {k: getattr(opts, k) for k in keys}


def _device(name: str, accelerate: dict | None, warnings: list[str]) -> str:
    """``plan.device``; auto: this machine's GPU; with none here, the CPU for a sweep run here
    (no accelerate topology), else an H100, said in a warning."""
    from limo_exp.analysis.plan_figures import run_device
    from limo_exp.hardware import GPUS

    if name == "auto":
        from limo_exp.tracking.run_log import device_name

        here = run_device(device_name())
        if here == "cpu" and accelerate:
            warnings.append("no GPU here: priced on H100s (plan.device=H200|H100|A100|L40S to choose)")
            return "H100"
        return here
    if name != "cpu" and name not in GPUS:
        raise ConfigError(f"plan.device={name!r}: expected auto, cpu or one of {', '.join(GPUS)}")
    return name


def _gpus(gpus, accelerate: dict | None) -> int:
    if gpus != "auto":
        return int(gpus)
    if accelerate:
        return int(accelerate.get("num_processes", 1)) * int(accelerate.get("num_machines", 1) or 1)
    return 1


def _history(c):
    """The store's FINISHED runs of the study (read, never created), as plan figures."""
    from limo_exp.analysis.plan_figures import History
    from limo_exp.tracking.tracker import Tracker

    if not c.tracking.enabled:
        return History(), None, ["tracking is disabled: no run is known FINISHED, no figure is measured"]
    uri = c.tracking.uri or ""
    if uri.startswith("sqlite:///") and not _sqlite_has(
        uri.removeprefix("sqlite:///"), c.tracking.experiment
    ):
        return History(), None, []  # no store or no such study yet (none is created here): nothing ran
    try:
        tracker = Tracker(c.tracking.uri, c.tracking.experiment, create=False)
    except SystemExit:  # no experiment yet: nothing ran
        return History(), None, []
    return History.of(tracker.search("attributes.status = 'FINISHED'")), tracker, []


def _sqlite_has(path: str, experiment: str) -> bool:
    """Does a SQLite MLflow store at ``path`` hold ``experiment``? Read directly (MLflow takes
    seconds to import and open a store); an unreadable file: let MLflow say what is wrong."""
    import sqlite3

    if not Path(path).exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return (
                db.execute("SELECT 1 FROM experiments WHERE name = ?", (experiment,)).fetchone() is not None
            )
    except sqlite3.Error:
        return True


def _point_names(points: list[list[str]], overrides: list[str]) -> list[str]:
    fixed = set(overrides)
    names = [", ".join(o for o in p if o not in fixed) for p in points]
    return [n or "the run" for n in names]


def plan_sweep(config: DictConfig) -> list[Path]:
    """``run --multirun``'s plan, before anything starts: its one line printed, plan.md / plan.json
    in the sweep folder (returned, for the parent run). A sweep over ``plan.max_gpu_hours`` is
    refused (SystemExit); a plan that cannot be made is a warning, never a stop."""
    from limo_exp.analysis.plan import hours_text, write

    try:
        plan, _ = make_plan([str(o) for o in config.hydra.overrides.task])
    except Exception as e:  # the jobs will say what is wrong with their configs
        log.warning("plan: not made (%s: %s)", type(e).__name__, e)
        return []
    files = write(plan, config.hydra.sweep.dir)
    print(plan.summary(), flush=True)
    budget = plan.settings["max_gpu_hours"]
    if budget is not None and plan.hours is not None and plan.hours > budget:
        raise SystemExit(
            f"limo-exp: the sweep needs {hours_text(plan.hours)} {plan.device}-hours, over plan.max_gpu_hours={budget}: "
            f"nothing started (the plan: {files[0]})"
        )
    return files


def main(argv: list[str] | None = None) -> None:
    """The console entry: ``limo-exp plan [overrides] [--multirun]``."""
    from limo_exp.analysis.plan import markdown, write

    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in MULTIRUN]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        plan, base = make_plan(args)
    except ConfigError as e:
        raise SystemExit(f"limo-exp: config error: {e}") from None
    files = write(plan, str(base.hydra.sweep.dir))
    print(markdown(plan))
    print(f"written: {', '.join(str(f) for f in files)}")
