"""Benchmark training steps of the model families.

`python -m experiments.benchmark --config=configs/benchmarks/<name>.py --workdir=DIR`

Times the jitted training step (forward + backward + Adam update) of every row of the config's
grid, with its compile time and peak memory, and prints a progress line per row. Writes
`<workdir>/results.json` (one dict per row: model, label, impl, seq_len, batch, hidden, step_ms,
compile_s, peak_bytes, ratio_vs_baseline ...), `results.md` (the table), `environment.json`
(backend, versions, load average) and `step_time_vs_length.png`. See cnn_rnn/benchmarking.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

from absl import flags
from ml_collections import config_flags

from experiments.cli import config_and_workdir, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json and the plot.")


def environment() -> dict[str, Any]:
    """Return what the timings depend on: backend, device, versions, cores and load."""
    import importlib.metadata

    import flax
    import jax

    from cnn_rnn.benchmarking.cases import torch_available

    env = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
           "jax": jax.__version__, "flax": flax.__version__, "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
    if torch_available():  # the version only: importing torch here would precede its setup
        env["torch"] = importlib.metadata.version("torch")
    return env


def run_benchmark(config: Any, workdir: str) -> list[dict[str, Any]]:
    """Time every row of the benchmark `config`; write results, table and plot under `workdir`.

    Returns the rows (one dict per timed case). A row is written as soon as it is timed, so a
    run stopped mid-suite keeps what it measured.
    """
    from cnn_rnn.benchmarking import report, suite, timing
    from cnn_rnn.training.loop import prepare_workdir

    # One-line errors before any import of torch or compilation, and before any timing.
    case_list = suite.validate(config)
    prepare_workdir(workdir)
    env = environment()
    print(f"benchmark on {env['backend']} ({env['device']}), {env['cpu_count']} cores, "
          f"load average {env['load_average_start'][0]:.2f}", flush=True)

    done: list[dict[str, Any]] = []

    def on_row(row: dict[str, Any], i: int, n: int) -> None:
        done.append(row)
        report.write_results(done, workdir)  # a crash mid-suite keeps the rows timed so far
        print(report.progress_line(row, i, n), flush=True)

    rows = suite.run_suite(config, on_row, case_list)
    env["load_average_end"] = os.getloadavg()
    # The allocator's high-water mark over the whole run (GPU/TPU; None on CPU): per-row
    # peaks come from XLA's buffer assignment instead (see timing.PEAK_SOURCE).
    env["device_peak_bytes_process"] = timing.device_peak_bytes()
    report.write_results(rows, workdir)
    with open(os.path.join(workdir, "environment.json"), "w") as f:
        json.dump(env, f, indent=1)
    text = report.table(rows)
    with open(os.path.join(workdir, report.TABLE_FILE), "w") as f:
        f.write(text + "\n")
    plot = report.plot_step_time(rows, os.path.join(workdir, report.PLOT_FILE),
                                 config.get("title", ""))
    print(text)
    print(f"{len(rows)} rows; results in {os.path.join(workdir, report.RESULTS_FILE)}, "
          f"plot {plot}; load average at the end {env['load_average_end'][0]:.2f}")
    sys.stdout.flush()
    return rows


def main(argv: list[str]) -> None:
    """Run the benchmark grid, then write the table, results.json and the plot."""
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR,
                                         "configs/benchmarks/recurrent_cpu.py")
    run_benchmark(config, workdir)


if __name__ == "__main__":
    run_main(main)
