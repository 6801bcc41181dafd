"""SIGINT (Ctrl-C) and SIGTERM (what schedulers and preempted VMs send) as a request to stop.

While training, the first signal only sets a flag: the loop finishes the step it is in, saves a
checkpoint at that step and raises `Interrupted`. A second signal raises `Interrupted` at once,
wherever the program is; a save it cuts short never replaces a good checkpoint (Orbax renames a
checkpoint into place only when it is complete).

`stop_requests()` is what the loop uses: this signal handling with one process, JAX's preemption
sync (`distributed.PreemptionSync`) with several. Both answer `at(step)` (save and stop after
this step?) and `error(step)` (what to raise then), so the loop has one stop path for both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from cnn_rnn.training import distributed

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """The run stopped on a signal; `step` is the checkpoint saved for it, if any.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` (e.g. the one that
    sets aside unreadable checkpoints) mistakes it for a failure of its own.
    """

    def __init__(self, signum: int, step: int | None = None, detail: str = ""):
        self.signum, self.step, self.detail = signum, step, detail
        super().__init__(self.line())

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    def line(self) -> str:
        """The one line an entry point prints."""
        if self.step is not None:
            return (f"interrupted at step {self.step}; checkpoint saved; run the same command "
                    "to resume")
        return f"interrupted ({signal.Signals(self.signum).name}); {self.detail or 'stopped'}"


class StopRequest:
    """The first SIGINT/SIGTERM received while `catch_signals()` is active, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def at(self, step: int) -> bool:
        """Whether to save and stop after `step` (a signal has arrived)."""
        del step
        return self.signum is not None

    def error(self, step: int) -> Interrupted:
        """What the loop raises once it has saved the checkpoint at `step`."""
        return Interrupted(self.signum, step=step)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signum is None:
            self.signum = signum
            return
        raise Interrupted(signum, detail="stopped at once without saving; the checkpoints "
                          "already written are intact")


@contextlib.contextmanager
def catch_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a StopRequest for the duration (main thread only; else a no-op)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request._handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest | distributed.PreemptionSync]:
    """The loop's request to save and stop: signals with one process, preemption sync with more.

    With several processes SIGTERM is JAX's preemption notice (its handler is installed by
    `jax.distributed.initialize`), so no signal handler is set here.
    """
    if distributed.process_count() > 1:
        yield distributed.PreemptionSync()
        return
    with catch_signals() as request:
        yield request
