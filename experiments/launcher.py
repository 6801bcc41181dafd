"""The launcher's work: start N local processes of one command, relay their output, stop them.

experiments/launch.py is its command line; this module defines no flags, so that tests can use
it beside entry points whose flags (`--num_processes`) would collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from cnn_rnn.training import interrupts
from cnn_rnn.training.host_devices import env_with_devices


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(index: int, devices: int | None) -> dict[str, str]:
    """The environment of process `index`: its device count and GPU ids, unbuffered output."""
    if not devices:
        return dict(os.environ, PYTHONUNBUFFERED="1")
    env = env_with_devices(devices, PYTHONUNBUFFERED="1")
    env["JAX_LOCAL_DEVICE_IDS"] = ",".join(
            str(i) for i in range(index * devices, (index + 1) * devices))
    return env


# gloo's note (on stdout, from C++) that a process connected to its peers, "[Gloo] Rank 1 is
# connected to 7 peer ranks. Expected number of connected peer ranks is : 7". It is written in
# pieces, and threads that connect at once interleave them ("[Gloo] Rank 1 is connected to [Gloo]
# Rank 1 is connected to 7 peer ranks. ...", then "7 peer ranks. ..."), so each piece is matched.
CHATTER = re.compile(r"\[Gloo\] Rank \d*| is connected to \d*| peer ranks\. ?"
                     r"|Expected number of connected peer ranks is : \d*")


def without_chatter(line: str) -> str:
    """`line` less gloo's connection note; "" where nothing else was in it."""
    rest = CHATTER.sub("", line)
    if rest == line:
        return line
    return "" if rest.strip().isdigit() or not rest.strip() else rest


def _pump(index: int, proc: subprocess.Popen, lock: threading.Lock, quiet: bool) -> None:
    for line in proc.stdout:
        if quiet and not (line := without_chatter(line)):
            continue
        with lock:
            sys.stdout.write(f"[{index}] {line}")
            sys.stdout.flush()


def launch(command: Sequence[str], num_processes: int, devices: int | None, port: int,
           grace_s: float, quiet: bool = True) -> int:
    """Start the processes, stream their output, and return the run's exit code.

    `quiet` drops gloo's connection notes (absl's `-v` keeps them).
    """
    address = f"localhost:{port or free_port()}"
    procs = []
    for i in range(num_processes):
        args = [*command, f"--coordinator_address={address}",
                f"--num_processes={num_processes}", f"--process_id={i}"]
        # Own sessions: a Ctrl-C in the terminal reaches them once, forwarded by the launcher,
        # not twice (a second signal means "stop at once, without saving").
        procs.append(subprocess.Popen(args, env=process_env(i, devices), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, bufsize=1,
                                      start_new_session=True))
    lock = threading.Lock()
    pumps = [threading.Thread(target=_pump, args=(i, p, lock, quiet), daemon=True)
             for i, p in enumerate(procs)]
    for t in pumps:
        t.start()

    signalled_at: list[float] = []

    def forward(signum: int) -> None:
        signalled_at.append(time.monotonic())
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                    p.send_signal(signum)

    interrupts.forward_signals(forward)  # on the watcher thread: works while we wait, too
    code, failed_at = 0, None
    while any(p.poll() is None for p in procs):
        for i, p in enumerate(procs):
            if p.returncode not in (None, 0) and code == 0:
                code, failed_at = _exit_code(p.returncode), time.monotonic()
                _note(lock, f"process {i} exited with code {_exit_code(p.returncode)}; the "
                      f"others get {grace_s:.0f}s to stop")
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            _stop(procs, lock)
            break
        # Signalled processes save and stop within the deadline; a hung step never does.
        if signalled_at and time.monotonic() - signalled_at[0] > interrupts.STOP_DEADLINE_S + 5:
            _note(lock, f"the processes did not stop within {interrupts.STOP_DEADLINE_S + 5:.0f}"
                  " s of the signal; killing them; rerun to resume from the newest checkpoint")
            for p in procs:
                p.kill()
            code = code or 128 + signal.SIGTERM
            break
        time.sleep(0.2)
    for p in procs:
        p.wait()
    for t in pumps:
        t.join(timeout=5)
    codes = [_exit_code(p.returncode) for p in procs]
    if any(codes):
        _note(lock, "exit codes " + ", ".join(f"process {i}: {c}" for i, c in enumerate(codes)))
    return code or next((c for c in codes if c), 0)


def _exit_code(returncode: int) -> int:
    # A process killed by signal N reports -N; a shell would say 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def _note(lock: threading.Lock, message: str) -> None:
    with lock:
        sys.stdout.write(f"[launch] {message}\n")
        sys.stdout.flush()


def _stop(procs: Sequence[subprocess.Popen], lock: threading.Lock) -> None:
    live = [p for p in procs if p.poll() is None]
    _note(lock, f"stopping {len(live)} process(es) still running")
    for p in live:
        p.terminate()
    deadline = time.monotonic() + 30
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
