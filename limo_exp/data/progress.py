"""Progress bars (tqdm) for the long stages, on a terminal only.

Shown when stderr is a terminal, ``CI`` is not set and, where logging is configured (Hydra's
commands), the ``limo_exp`` logger shows INFO (so ``hydra.job_logging.root.level=WARNING`` silences
bars with the logs); ``LIMO_PROGRESS=1`` or ``0`` decides instead. Logs, CI and tests get none.

    with bar("train", total=steps, unit="step") as b: ... b.update(1)
    marks = StageMarks(); ...; marks.done("dedup_near", n)   # one finished line per stage
"""

from __future__ import annotations

import logging
import os
import sys
import time


def enabled() -> bool:
    forced = os.environ.get("LIMO_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    configured = bool(logging.getLogger().handlers)  # Hydra's logging, not a bare script's defaults
    quiet = configured and not logging.getLogger("limo_exp").isEnabledFor(logging.INFO)
    return sys.stderr.isatty() and not os.environ.get("CI") and not quiet


def bar(desc: str, total: int | None, unit: str = "it", initial: int = 0, show: bool = True):
    """A tqdm bar (a no-op one when ``enabled()`` is false or ``show`` is: ranks other than 0)."""
    from tqdm import tqdm

    disable = not (show and enabled())
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, dynamic_ncols=True)


class StageMarks:
    """Stages that run as one call: when each ends, a finished bar with its records and records/s."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def done(self, stage: str, records: int) -> None:
        if enabled():
            from tqdm import tqdm

            elapsed = time.perf_counter() - self.last  # the stage began when the previous one ended
            tqdm.write(
                tqdm.format_meter(records, records, elapsed, prefix=f"{stage:<12}", unit="rec"), sys.stderr
            )
        self.last = time.perf_counter()
