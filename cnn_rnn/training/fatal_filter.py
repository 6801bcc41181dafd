"""A survivor's fatal abort, when another process of a distributed run dies, as one line.

When the coordinator (process 0) dies, JAX's runtime client on every other process polls the
error and aborts from a C++ thread: a fatal log line, gRPC details, then Python's fault handler
dumps every thread's stack (about 40 lines, exit 134). Nothing in the process can run after that,
and `jax.distributed.initialize` offers no callback that works (the client's
`missed_heartbeat_callback` cannot be given the status and terminates the process too). So
`start()` routes this process's stderr through a small filter process: it passes everything
through until it sees the runtime's fatal markers, drops what follows, and when the stream ends
prints one `error:` line naming what happened (unless this process has printed its own).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

# Lines that begin the runtime's fatal output (the coordination service agent, the client's
# default error callback, an exception escaping a runtime thread).
MARKERS = (
    "Polled an error from coordination service",
    "Terminating process because the JAX distributed service detected fatal errors",
    "terminate called after throwing",
    # Only said once a task is lost: the survivor's failed call to the dead coordinator, and
    # the coordinator's notice that a peer stopped sending heartbeats.
    "Additional GRPC error information from remote target coordination_service",
    "Use error polling to propagate the following error to all tasks",
)
# The runtime's warning, on a survivor, that the coordinator stopped answering (also at an
# ordinary shutdown's end): the one line this filter or the process prints says what happened.
DROPPED = re.compile(rb"(?m)^W\d{4} [^\n]*preemption_sync_manager\.cc:\d+\] Failed to retrieve "
                     rb"preemption notice[^\n]*\n")


def error_line(who: str) -> str:
    """The line the filter prints for `who` (e.g. "process 1 of 2") after a fatal abort."""
    return (f"error: {who} stopped: the distributed runtime lost a process (the coordinator, "
            "process 0, or a peer died or was killed); rerun all processes: they resume from "
            "the last checkpoint")


def filter_stream(read_fd: int, write_fd: int, who: str) -> None:
    """Copy `read_fd` to `write_fd` until end of stream, condensing the runtime's fatal output.

    Data passes through as it comes (a progress bar's partial lines included), less the
    coordinator-unavailable warning (DROPPED); from the chunk holding a marker on, nothing
    does. At the end, the error line, unless one was passed.
    """
    muted, said, tail = False, False, b"\n"  # as if after a line end
    markers = [m.encode() for m in MARKERS]
    while data := os.read(read_fd, 65536):
        if muted:
            continue
        hits = [data.find(m) for m in markers if m in data]
        if hits:
            # Keep whole lines before the marker's line.
            data, muted = data[:data.rfind(b"\n", 0, min(hits)) + 1], True
        data = DROPPED.sub(b"", data)
        said = said or b"\nerror: " in tail + data
        tail = (tail + data)[-16:]
        if data:
            os.write(write_fd, data)
    if muted and not said:
        os.write(write_fd, (error_line(who) + "\n").encode())


def start(who: str) -> None:
    """Route this process's stderr (fd 2) through a filter process (see the module docstring).

    The filter ignores SIGINT and SIGTERM (it ends when this process's stderr closes, however
    this process ends).
    """
    read_fd, write_fd = os.pipe()
    code = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "from cnn_rnn.training.fatal_filter import filter_stream; "
            "filter_stream(0, 2, sys.argv[1])")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.Popen([sys.executable, "-c", code, who], stdin=read_fd, cwd=root,
                     start_new_session=True)
    os.close(read_fd)
    sys.stderr.flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
