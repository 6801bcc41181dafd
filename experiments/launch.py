"""Run N local processes of one command on JAX's distributed runtime (testing, one multi-GPU node).

    python -m experiments.launch --num_processes=2 --devices_per_process=4 -- \
        python -m experiments.run --config=configs/mnist1d_cnn.py --workdir=/tmp/run

Each process gets `--coordinator_address=localhost:PORT --num_processes=N --process_id=I`
appended (a free port is picked), and `--devices_per_process` devices: forced host devices on a
CPU (XLA_FLAGS) and the I-th block of GPUs (JAX_LOCAL_DEVICE_IDS). Output lines are prefixed with
`[I]`. When a process fails, the others get `--grace_s` seconds to stop on their own (a lost peer
stops them within the distributed heartbeat timeout), then SIGTERM, then SIGKILL. SIGTERM or
SIGINT to the launcher is passed on to every process (a preemption: they save and exit); processes
still running 5 s past their own stop deadline (a hung step) are killed. The exit code is the first
non-zero code of a process, else 0.
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

from absl import flags

from cnn_rnn.training import interrupts
from experiments.cli import fail, run_main

_NUM = flags.DEFINE_integer("num_processes", 2, "Number of local processes to start.")
_DEVICES = flags.DEFINE_integer(
    "devices_per_process", None, "Devices per process: forced host devices on a CPU, the "
    "process's block of GPU ids on a GPU machine. Default: the platform's own.")
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port on localhost (0: pick a free one).")
_GRACE = flags.DEFINE_float("grace_s", 60.0, "Seconds the others get to stop after one fails.")


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(index: int, devices: int | None) -> dict[str, str]:
    """The environment of process `index`: its device count and GPU ids, unbuffered output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if devices:
        kept = [f for f in env.get("XLA_FLAGS", "").split()
                if not f.startswith("--xla_force_host_platform_device_count")]
        env["XLA_FLAGS"] = " ".join([*kept, f"--xla_force_host_platform_device_count={devices}"])
        env["JAX_LOCAL_DEVICE_IDS"] = ",".join(
            str(i) for i in range(index * devices, (index + 1) * devices))
    return env


# gloo's note (on stdout, from C++) that a process connected to its peers: once per process.
CHATTER = re.compile(r"\[Gloo\] Rank \d+ is connected to ")


def _pump(index: int, proc: subprocess.Popen, lock: threading.Lock, quiet: bool) -> None:
    for line in proc.stdout:
        if quiet and CHATTER.match(line):
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


def main(argv: list[str]) -> None:
    """Launch the command after `--` on `--num_processes` local processes."""
    command = argv[1:]
    if not command:
        fail("a command is required after --; e.g. python -m experiments.launch "
             "--num_processes=2 -- python -m experiments.run --config=... --workdir=...")
    if _NUM.value < 1:
        fail(f"--num_processes: {_NUM.value}; accepted: an integer >= 1")
    if _DEVICES.value is not None and _DEVICES.value < 1:
        fail(f"--devices_per_process: {_DEVICES.value}; accepted: an integer >= 1")
    quiet = not flags.FLAGS["verbosity"].present
    sys.exit(launch(command, _NUM.value, _DEVICES.value, _PORT.value, _GRACE.value, quiet))


if __name__ == "__main__":
    run_main(main)
