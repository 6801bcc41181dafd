"""Training progress: a tqdm bar on a terminal, a plain line now and then anywhere else.

A bar redrawn with carriage returns is unreadable in a log file, a CI log or under the launcher
(which prefixes every line with its process): there, `LineProgress` says where the run is every
`every_s` seconds, in one line each, through the run's logger.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def _interactive() -> bool:
    """Whether progress can be redrawn in place: a terminal, or a Jupyter kernel's output."""
    return sys.stderr.isatty() or _in_kernel()


def _in_kernel() -> bool:
    """Whether this process is a Jupyter (or Colab) kernel, not merely one that imported it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class LineProgress:
    """tqdm's interface as used by the training loop, said in lines every `every_s` seconds."""

    def __init__(self, total: int, initial: int, every_s: float = 60.0) -> None:
        self.total, self.n, self.every_s = total, initial, every_s
        self._start_n, self._t0 = initial, time.monotonic()
        self._said_at, self._postfix = self._t0, ""

    def update(self, n: int = 1) -> None:
        """Count `n` steps; say where the run is if `every_s` passed since the last line."""
        self.n += n
        now = time.monotonic()
        if now - self._said_at >= self.every_s and self.n < self.total:
            self._said_at = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """`step N/M (P%), R step/s, about S s left[, loss=...]`."""
        rate = (self.n - self._start_n) / max(now - self._t0, 1e-9)
        left = (self.total - self.n) / rate if rate > 0 else float("inf")
        text = (f"step {self.n}/{self.total} ({100 * self.n / self.total:.0f}%), "
                f"{rate:.3g} step/s, about {_duration(left)} left")
        return f"{text}, {self._postfix}" if self._postfix else text

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        """Values shown at the end of the next line (tqdm's signature)."""
        del refresh
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        """A line of its own (an eval result)."""
        log.info("%s", text)

    def close(self) -> None:
        """Nothing to clear: every line is already whole."""

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """The loop's progress display: tqdm on a terminal, `LineProgress` elsewhere, or none."""
    if enabled and not _interactive():
        return LineProgress(total, initial)
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step",
                dynamic_ncols=True, mininterval=1.0)
