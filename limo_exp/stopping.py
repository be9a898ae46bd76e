"""A stop that waits for a step to end: while training runs inside ``deferred()``, SIGTERM (SLURM's
time limit or preemption, forwarded by the launcher) only asks; the loop saves a resumable state
at the end of the step and then stops the process (``commands.common.stop_on_signals``). A second
signal, or one outside ``deferred()``, stops at once."""

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
    """Called by the signal handler: True when the stop is left to the loop (the first signal, while
    deferring)."""
    if _deferring and not _asked:
        _asked.append(signum)
        return True
    return False


def asked() -> int | None:
    """The signal that asked to stop, if one did."""
    return _asked[0] if _asked else None
