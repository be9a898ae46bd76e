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
    device = _device(opts.device, _models(points, first), warnings)
    gpus = _gpus(opts.gpus, first.accelerate, base.hydra.get("launcher"))
    if device != "cpu" and not first.accelerate and opts.gpus == "auto":
        warnings.append(
            f"no accelerate topology: each point is priced as one process on one {device}; for several "
            "GPUs a point name one (accelerate=fsdp: 8, accelerate=ddp, accelerate=deepspeed_zero3)"
        )
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


GPU_SIZED = 1e9  # parameters: a model this large is trained on GPUs, whatever machine plans it


def _models(points: list[list[str]], first) -> list:
    """A config of each model the sweep trains (the first point naming it), for ``_device``."""
    from limo_exp.commands import plan_points
    from limo_exp.commands.common import parse

    out, seen = [first], {None}
    for point in points:
        model = next((o for o in reversed(point) if o.startswith("model=")), None)
        if model not in seen:
            seen.add(model)
            with contextlib.suppress(ConfigError, ValueError):  # the point says so itself, later
                out.append(parse(plan_points.compose(point)).config)
    return out


def _device(name: str, cfgs: list, warnings: list) -> str:
    """``plan.device`` (any case); auto: this machine's GPU; with none here, an H100 (said in a
    warning) for a sweep meant for GPUs (an accelerate topology, or a model of 1B parameters or
    more), else the CPU (a sweep sized to run here, such as the demo)."""
    from limo_exp.analysis.plan_figures import run_device
    from limo_exp.commands import plan_points
    from limo_exp.hardware import GPUS

    if name == "auto":
        from limo_exp.tracking.run_log import device_name

        here = run_device(device_name())
        if here != "cpu":
            return here
        sizes = [s.params for c in cfgs if (s := plan_points._shape(c, warnings)) is not None]
        if cfgs[0].accelerate or max(sizes, default=0) >= GPU_SIZED:
            why = "its accelerate topology" if cfgs[0].accelerate else f"{max(sizes) / 1e9:.1f}B parameters"
            warnings.append(
                f"no GPU here: priced on H100s, the GPUs the sweep is meant for ({why}); "
                "plan.device=H200|A100|L40S|cpu to choose"
            )
            return "H100"
        return here
    known = {k.lower(): k for k in (*GPUS, "cpu")}
    if name.lower() not in known:
        raise ConfigError(
            f"plan.device={name!r} is no device the plan knows: use auto, cpu or one of {', '.join(GPUS)} "
            "(their data sheets: limo_exp/hardware.py)"
        )
    return known[name.lower()]


def _gpus(gpus, accelerate: dict | None, launcher=None) -> int:
    """plan.gpus, else what the launcher starts (gpus_per_node x nodes), else the topology's."""
    if gpus != "auto":
        return int(gpus)
    if launcher is not None and launcher.get("gpus_per_node") is not None:
        return int(launcher.gpus_per_node) * int(launcher.get("nodes") or 1)
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


HELP = """usage: limo-exp plan [run's overrides] [--multirun]
  A sweep's points, device-hours, memory and what its comparisons can detect, before launch:
  no model loaded, no MLflow run (docs/plan.md). Prints the plan, writes plan.md / plan.json.

  limo-exp plan --multirun sweep=less_is_more plan.device=H200
  limo-exp plan --multirun experiment=demo data.n_samples=8,16,64 plan.max_gpu_hours=2

keys (plan.<key>=<value>; default, what):
{keys}

sweeps (sweep=<name>): {sweeps}"""
EXTRA_HELP = {"power": "the chance a real gain must be found with", "alpha": "the paired tests' level"}


def usage() -> str:
    """``limo-exp plan --help``: what it does, the plan's keys with their defaults and meanings
    (conf/config.yaml's ``plan:`` block, its comments), and the sweeps there are."""
    from limo_exp import CONF_DIR

    keys, block = [], False
    for line in (Path(CONF_DIR) / "config.yaml").read_text().splitlines():
        if line.startswith("plan:"):
            block = True
        elif block and line and not line.startswith(" "):
            break
        elif block and line.strip() and not line.strip().startswith("#"):
            setting, _, what = line.strip().partition("#")
            key, _, default = setting.partition(":")
            keys.append(f"  plan.{key:<18} {default.strip():<6} {what.strip() or EXTRA_HELP.get(key, '')}")
    sweeps = ", ".join(sorted(p.stem for p in (Path(CONF_DIR) / "sweep").glob("*.yaml")))
    return HELP.format(keys="\n".join(keys), sweeps=sweeps)


def door(args: list[str]) -> None:
    """One line, before Hydra composes anything, for a config group value that is not in conf/:
    a sweep named as another group (``experiment=less_is_more``: ``sweep=less_is_more``), else
    the group's choices (SystemExit)."""
    from limo_exp import CONF_DIR

    conf = Path(CONF_DIR)
    for a in args:
        key, eq, values = a.lstrip("+~").partition("=")
        if not eq or key.startswith("hydra") or not (conf / key).is_dir():
            continue
        for value in values.split(","):
            if not value or value == "null" or (conf / key / f"{value}.yaml").exists():
                continue
            if key != "sweep" and (conf / "sweep" / f"{value}.yaml").exists():
                raise SystemExit(f"limo-exp: {key}={value}: {value} is a sweep: write sweep={value}")
            there = ", ".join(sorted(p.stem for p in (conf / key).glob("*.yaml")))
            raise SystemExit(f"limo-exp: {key}={value}: no conf/{key}/{value}.yaml; {key} is one of: {there}")


def main(argv: list[str] | None = None) -> None:
    """The console entry: ``limo-exp plan [overrides] [--multirun]``."""
    from hydra.errors import HydraException

    from limo_exp.analysis.plan import markdown, write

    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in MULTIRUN]
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage())
        return
    door(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        plan, base = make_plan(args)
    except ConfigError as e:
        raise SystemExit(f"limo-exp: config error: {e}") from None
    except HydraException as e:  # an override Hydra cannot parse or apply: its first line, no traceback
        raise SystemExit(f"limo-exp plan: {str(e).splitlines()[0]} (limo-exp plan --help)") from None
    files = write(plan, str(base.hydra.sweep.dir))
    print(markdown(plan))
    print(f"written: {', '.join(str(f) for f in files)}")
