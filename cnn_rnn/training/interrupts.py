"""SIGINT (Ctrl-C) and SIGTERM (what schedulers and preempted VMs send) at any moment of a run.

`install()` is the first thing an entry point does (`experiments/__init__.py` runs it before any
other import of `python -m experiments.<name>`). From then on the signals' Python handler does
nothing; Python's C-level handler wakes a watcher thread through `signal.set_wakeup_fd`, and the
watcher decides. So where a signal lands never matters: an import, a garbage-collection callback
(a KeyboardInterrupt raised there is printed and swallowed), or a C++ call that holds the main
thread for minutes (compilation, `jax.distributed.initialize` waiting for peers, a collective that
never completes), where a Python handler would not run at all.

- Outside training: one line and exit 128 + signum at once (`os._exit`: no interpreter shutdown
  racing XLA's threads, which is where segfaults after the line came from). Nothing is written
  before training but the workdir, its lock and `config.json`, each whole; a sweep's record
  copies whole points or, restoring, writes each point's summary last (`cnn_rnn/sweep_record.py`),
  so an exit in the middle leaves a point absent or unfinished, never half.
- While training (`stop_requests()`): the first signal is a request. The loop finishes the step it
  is in, saves a checkpoint at that step and raises `Interrupted`. A step that hangs never gets
  there: STOP_DEADLINE_S after the signal the watcher exits with one line, and the newest
  checkpoint stays the resume point (Orbax renames a checkpoint into place only when complete).
  A second signal exits at once the same way.

Without `install()` (a notebook, a test calling `train_and_evaluate`) `stop_requests()` sets a
flag-only handler for the loop's duration, and a second signal raises `Interrupted`.

With several processes the loop's stop is JAX's preemption sync (`distributed.PreemptionSync`):
`jax.distributed.initialize` takes SIGTERM over for it; a SIGINT is passed on as SIGTERM to this
process, so it stops all processes at one step too. This module imports nothing outside the
standard library, so that installing it costs nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Seconds a signalled run may take to finish its step and save before it stops without saving
# (a hung collective never finishes); the bound for leaving is 30 s.
STOP_DEADLINE_S = 25.0


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


AT_ONCE = "stopped at once without saving; the checkpoints already written are intact"
BEFORE = "stopped before training started"
BETWEEN = "stopped outside training; every checkpoint written is complete"
AFTER_LAST = "stopped after the last step; the run is complete; run the same command to finish"


def hung(seconds: float) -> str:
    """The detail of a stop whose step did not finish within `seconds` of the signal."""
    return (f"the step in progress did not finish within {seconds:.0f} s; stopped without saving; "
            "run the same command to resume from the newest checkpoint")


class StopRequest:
    """The first SIGINT/SIGTERM received while training, if any."""

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
        raise Interrupted(signum, detail=AT_ONCE)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler once installed: the watcher thread does the work."""
    del signum, frame


class Watcher:
    """The thread that acts on every SIGINT/SIGTERM of the process (see the module docstring)."""

    def __init__(self) -> None:
        self.request: StopRequest | None = None  # while training with one process
        self.preemption = False  # while training with several processes
        self.trained = False  # a training loop has run (for the line outside training)
        self.deadline: float | None = None
        self.forward: Callable[[int], None] | None = None

    def start(self) -> None:
        """Route SIGINT/SIGTERM to this watcher's thread (from the main thread)."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        for s in SIGNALS:
            signal.signal(s, _ignore)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._run, args=(read,), name="signal-watcher",
                         daemon=True).start()

    def _run(self, read: int) -> None:
        while True:
            deadline = self.deadline
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([read], [], [], timeout)
            if ready:
                # Every signal with a Python handler writes its number here, not only ours.
                for signum in os.read(read, 64):
                    if signum in SIGNALS:
                        self.received(signum)
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                signum = self.request.signum if self.request else signal.SIGINT
                self.exit(Interrupted(signum, detail=hung(STOP_DEADLINE_S)))

    def received(self, signum: int) -> None:
        """Act on one signal (called on the watcher thread; tests call it directly)."""
        if self.forward is not None:
            self.forward(signum)
        elif self.preemption and signum == signal.SIGINT and self.deadline is None:
            # JAX's preemption sync stops every process at one step on a SIGTERM.
            self.deadline = time.monotonic() + STOP_DEADLINE_S
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.request is None or self.request.signum is not None or self.preemption:
            training = self.request is not None or self.preemption
            detail = AT_ONCE if training else BETWEEN if self.trained else BEFORE
            self.exit(Interrupted(signum, detail=detail))
        else:
            self.request.signum = signum
            self.deadline = time.monotonic() + STOP_DEADLINE_S

    def exit(self, error: Interrupted) -> None:
        """Print `error`'s line and end the process with its code (see `exit_once`)."""
        exit_once(error.line(), error.exit_code)


_watcher: Watcher | None = None
_exit_lock = threading.Lock()


def exit_once(line: str | None, code: int) -> None:
    """Print `line` (if any) on stderr and end the process with `code` at once, whatever thread.

    Only the first caller prints: the main thread, the signal watcher and the distributed
    runtime's error callback may race to stop the process. `os._exit` skips the interpreter's
    shutdown (atexit, thread joins, finalizers), which can crash or wait on XLA's threads.
    """
    _exit_lock.acquire()  # never released
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if line is not None:
        with contextlib.suppress(OSError):  # stderr closed (its reader gone): exit all the same
            os.write(2, (line + "\n").encode())
    os._exit(code)


def exit_after_main(code: int | str | None) -> None:
    """End the process once its work is done, the way the interpreter would, then `os._exit`.

    What the interpreter's exit does that matters (join the threads that are not daemons, run
    the atexit handlers: JAX's distributed shutdown, logging's flush) runs here, with the watcher
    still in charge of signals; Python's own finalization would first reset the handlers to the
    default, and a signal landing then ended the process without a line (killed by the signal).
    `code` is SystemExit's: None is 0, a message is printed and exits 1.
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    # Through exit_once: a signal's line, if one came first, stays the only line.
    exit_once(code if isinstance(code, str) else None,
              code if isinstance(code, int) else 0 if code is None else 1)


def install() -> None:
    """Handle SIGINT/SIGTERM by the watcher from now on (main thread only; idempotent)."""
    global _watcher
    if _watcher is None and threading.current_thread() is threading.main_thread():
        _watcher = Watcher()
        _watcher.start()


def installed() -> Watcher | None:
    """The process's watcher, if `install()` has run."""
    return _watcher


def exit_interrupted(error: Interrupted) -> None:
    """End the process for `error` with its one line and exit code (an entry point's last act)."""
    if _watcher is not None:
        _watcher.exit(error)
    sys.stderr.write(error.line() + "\n")
    sys.stderr.flush()
    sys.exit(error.exit_code)


def forward_signals(forward: Callable[[int], None]) -> None:
    """Pass every later SIGINT/SIGTERM to `forward(signum)` instead (a launcher's children)."""
    install()
    if _watcher is not None:
        _watcher.forward = forward


@contextlib.contextmanager
def catch_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a StopRequest for the duration (main thread only; else a no-op).

    With the watcher installed it records the request; otherwise a flag-only handler does.
    """
    request = StopRequest()
    if _watcher is not None:
        with _watching(request=request):
            yield request
        if request:  # the signal came during the last step, which saved as usual
            raise Interrupted(request.signum, detail=AFTER_LAST)
        return
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
def _watching(**state: Any) -> Iterator[None]:
    """Set the watcher's training state for the block, and clear it (and any deadline) after."""
    assert _watcher is not None
    for name, value in state.items():
        setattr(_watcher, name, value)
    try:
        yield
    finally:
        _watcher.request, _watcher.preemption, _watcher.deadline = None, False, None
        _watcher.trained = True


@contextlib.contextmanager
def stop_requests() -> Iterator[Any]:
    """The loop's request to save and stop: signals with one process, preemption sync with more.

    Yields a `StopRequest` or a `distributed.PreemptionSync`; both answer `at(step)` and
    `error(step)`. With several processes SIGTERM is JAX's preemption notice (its handler is
    installed by `jax.distributed.initialize`), so no signal handler is set here.
    """
    from cnn_rnn.training import distributed

    if distributed.process_count() > 1:
        if _watcher is None:
            yield distributed.PreemptionSync()
            return
        with _watching(preemption=True):
            yield distributed.PreemptionSync()
        return
    with catch_signals() as request:
        yield request


def catches_signals(pid: int) -> bool:
    """Whether process `pid` has handlers for SIGINT and SIGTERM (Linux: /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(ln.split()[1], 16) for ln in f if ln.startswith("SigCgt:"))
    except (FileNotFoundError, StopIteration):
        return False
    return all(caught >> (s - 1) & 1 for s in (signal.SIGINT, signal.SIGTERM))
