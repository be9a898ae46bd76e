"""What every command shares: the parsed spec, Hydra's folders, and skip-if-already-done."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from limo_exp.config import Config, ConfigError, TrackingConfig
from limo_exp.evaluation import registry
from limo_exp.identity import RunSpec
from limo_exp.tracking.tracker import NullTracker, fail_parent

log = logging.getLogger("limo_exp")


def parse(cfg: DictConfig) -> RunSpec:
    """The composed config, resolved, checked against the schema and the task registry: the one
    place a command reads ``cfg``. Fails before any data is loaded."""
    spec = RunSpec.parse(OmegaConf.to_container(cfg, resolve=True))
    registry.check_tasks(spec.config.eval.tasks)
    return spec


def command(app: Callable[[DictConfig], object]) -> Callable[[], None]:
    """The console entry of a command: ``app(cfg)`` as a Hydra app over conf/ (every override and
    ``--multirun`` work the same for all commands), a config error ending it in one line."""
    import hydra

    from limo_exp import CONF_DIR

    hydra_app = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(
        config_errors_as_exit(app)
    )

    def main() -> None:
        stop_on_signals()  # from the start: a sweep's parent run is created before its first job
        hydra_app()

    return main


def config_errors_as_exit(app):
    """A command's Hydra function: a config error ends it with one line naming the key, not a traceback."""

    @functools.wraps(app)
    def wrapper(cfg: DictConfig):
        try:
            return app(cfg)
        except ConfigError as e:
            raise SystemExit(f"limo-exp: config error: {e}") from None

    return wrapper


@contextlib.contextmanager
def run_lock(run_dir: Path | None):
    """Hold ``<run_dir>/.lock`` for the run: a second launch of the same run key while the first
    is alive fails at once, and while it is held, earlier unfinished attempts are known dead."""
    if run_dir is None:  # ranks other than 0
        yield
        return
    with open(Path(run_dir) / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{run_dir} is being run by another process (its .lock is held)") from None
        yield  # released when the file closes


_stopping: list[int] = []  # the signal that is stopping this process, once one came
_unraisablehook = sys.unraisablehook  # the hook before ours: it still reports what was dropped


def stop_on_signals() -> None:
    """SIGTERM (SLURM time limits, preemption, `timeout`), SIGUSR2 and Ctrl-C unwind the process: its MLflow
    runs end KILLED, the last training state stays for a relaunch. A SIGINT that the launcher set to
    be ignored (a background job of a script, ``nohup``) stays ignored."""
    global _unraisablehook
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGUSR2, _stop)  # SLURM's warning before the time limit (--signal=USR2@...)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)
    if sys.unraisablehook is not _stop_again:
        _unraisablehook, sys.unraisablehook = sys.unraisablehook, _stop_again


def stopped_by_signal() -> bool:
    """Has SIGTERM or SIGINT come to this process?"""
    return bool(_stopping)


def _stop(signum, frame):
    from limo_exp import stopping

    _stopping.append(signum)
    if signum != signal.SIGINT and stopping.defer(signum):
        return  # training saves its state at the end of the step, then stops (limo_exp.stopping)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _stop_again(unraisable) -> None:
    """Python drops an exception raised in a finalizer (a ``__del__``, a weakref callback run by
    the garbage collector), and a signal can land there: such a stop is sent again 50 ms later,
    from a thread, once this hook and the finalizer have returned (dropped again: sent again)."""
    _unraisablehook(unraisable)
    if _stopping and issubclass(unraisable.exc_type, (KeyboardInterrupt, SystemExit)):
        again = threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, _stopping[-1]))
        again.daemon = True
        again.start()


def sweep_dir() -> str | None:
    """The multirun's folder (where the sweep's parent run id is kept), or None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.sweep.dir if hc.mode == RunMode.MULTIRUN else None


def job_overrides() -> list[str]:
    """This job's command-line overrides (a multirun's point: its values of the swept axes too)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def already_done(tracker: NullTracker, key: str, force: bool) -> dict | None:
    """The result of an earlier FINISHED run with this key (nothing is recomputed), unless ``force``."""
    done = tracker.find_finished(key)
    if done is None or force:
        return None
    log.info("run_key %s already FINISHED as MLflow run %s; skipping (force=true reruns)", key, done.run_id)
    return {"run_key": key, "run_id": done.run_id, "skipped": True, "metrics": dict(done.metrics)}


def print_metrics(metrics: dict[str, float], keep=lambda k: True, width: int = 50) -> None:
    for k, v in sorted(metrics.items()):
        if keep(k):
            print(f"  {k:{width}s} {v:.4f}")


def eval_options(c: Config) -> dict:
    """What evaluation takes from the rest of the config: the model's dtype ("auto": bf16 on GPU,
    fp32 on CPU, as in training) and remote-code switch, the seed, and where responses are stored."""
    from limo_exp.training.models import torch_dtype

    dtype = str(torch_dtype(c.model.dtype)).removeprefix("torch.")
    store = str(Path(c.paths.cache_dir) / "responses")
    return {
        "dtype": dtype,
        "trust_remote_code": c.model.trust_remote_code,
        "attn_implementation": c.model.attn_implementation,
        "seed": c.seed,
        "store_dir": store,
    }


def fail_sweep(cfg: DictConfig, killed: bool = False) -> None:
    """A configuration of a sweep crashed (or was stopped: ``killed``): mark the sweep's parent
    run FAILED (KILLED), if the tracking config itself can be read (a config error never reached
    the sweep's store)."""
    try:
        tracking = TrackingConfig.from_dict(OmegaConf.to_container(cfg.tracking, resolve=True), "tracking")
    except Exception:  # the original error is what the user must see
        return
    fail_parent(tracking, sweep_dir(), "KILLED" if killed else "FAILED")
