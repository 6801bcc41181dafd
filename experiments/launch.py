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

import sys

from absl import flags

from experiments import launcher
from experiments.cli import fail, run_main

_NUM = flags.DEFINE_integer("num_processes", 2, "Number of local processes to start.")
_DEVICES = flags.DEFINE_integer(
    "devices_per_process", None, "Devices per process: forced host devices on a CPU, the "
    "process's block of GPU ids on a GPU machine. Default: the platform's own.")
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port on localhost (0: pick a free one).")
_GRACE = flags.DEFINE_float("grace_s", 60.0, "Seconds the others get to stop after one fails.")


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
    sys.exit(launcher.launch(command, _NUM.value, _DEVICES.value, _PORT.value, _GRACE.value, quiet))


if __name__ == "__main__":
    run_main(main)
