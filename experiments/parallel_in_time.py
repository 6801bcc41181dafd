"""Newton iterations of parallel-in-time RNN solvers against gradient decay and chaos.

`python -m experiments.parallel_in_time --config=configs/ablations/parallel_in_time.py
--workdir=DIR` writes DIR/results.json, DIR/report.md and DIR/iterations.png
(see cnn_rnn/diagnostics/newton.py).
"""

from __future__ import annotations

import json
import os
import time

from absl import flags
from ml_collections import config_flags

from experiments.cli import command_line, config_and_workdir, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json, report.md, figure.")
FIGURE = "iterations.png"


def main(argv: list[str]) -> None:
    """Measure every point, then write results.json, the figure and report.md."""
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR, "experiments.parallel_in_time")
    from cnn_rnn.diagnostics import newton, newton_report
    from cnn_rnn.training.loop import prepare_workdir

    newton.grid(config)  # bad tasks or stages fail here, before the workdir is made
    prepare_workdir(workdir)
    t0 = time.time()
    rows = newton.run(config)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    newton_report.plot(rows, config.methods, os.path.join(workdir, FIGURE))
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(newton_report.report(rows, config, command_line("experiments.parallel_in_time"),
                                     FIGURE))
    print(f"{len(rows)} points in {time.time() - t0:.0f}s; report {workdir}/report.md")


if __name__ == "__main__":
    run_main(main)
