"""A stop that waits for a step to end: while training runs inside ``deferred()``, SIGTERM or
SIGUSR2 (SLURM's time-limit warning, which reaches every process of the job, and the launcher's
SIGTERM after it) only ask; the loop saves a resumable state at the end of the step and then stops
the process (``commands.common.stop_on_signals``). Outside ``deferred()`` they stop at once;
SIGINT (Ctrl-C) always does."""

from __future__ import annotations

import contextlib

_deferring: list[bool] = []
_asked: list[int] = []  # signals that asked, while deferring


@contextlib.contextmanager
def deferred():
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()


def defer(signum: int) -> bool:
    """Called by the signal handler: True when the stop is left to the loop (while deferring; the
    signals that follow the first change nothing, SLURM's SIGKILL ends a loop that never gets there)."""
    if _deferring:
        _asked.append(signum)
        return True
    return False


def asked() -> int | None:
    """The signal that asked to stop, if one did."""
    return _asked[0] if _asked else None
