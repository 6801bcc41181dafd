"""Run a sweep: `python -m experiments.sweep --config=configs/sweeps/<name>.py --workdir=DIR`.

A sweep config file defines `get_config(arg)` (sweep-level settings, overridable with
`--config.<field>=value`), `get_points(config) -> list[cnn_rnn.sweep.Point]`, and optionally
`write_report(rows, workdir, config)`. Points already finished are skipped; rerunning an
interrupted sweep resumes it.
"""

from __future__ import annotations

import os
from typing import Any

from absl import flags
from ml_collections import config_flags

from experiments.cli import config_and_workdir, load_points_module, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory holding one folder per point.")


def default_report(rows: list[dict[str, Any]], workdir: str, config: Any) -> None:
    """A markdown table of every point's tags, parameters and final eval metrics."""
    from cnn_rnn.tables import markdown_table

    tags = list(dict.fromkeys(t for r in rows for t in r.get("tag_keys", [])))
    metrics = sorted({k for r in rows for k in r.get("eval", {})})
    columns = [("point", "name"), *[(t, t) for t in tags], ("params", "params"),
               *[(m, f"eval.{m}") for m in metrics], ("baseline", "baseline.value"),
               ("seconds", "train_seconds")]
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(markdown_table(rows, columns) + "\n")


def main(argv: list[str]) -> None:
    """Validate, run every point, write the report."""
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR,
                                         "configs/sweeps/results_cpu.py")
    module = load_points_module(flags.FLAGS["config"].config_filename, "a sweep")
    from cnn_rnn.sweep import run_sweep

    points = module.get_points(config)
    hook = getattr(module, "after_point", None)
    rows = run_sweep(points, workdir,
                     after_point=(lambda p, d, r: hook(p, d, r, config)) if hook else None)
    report = getattr(module, "write_report", default_report)
    report(rows, workdir, config)
    print(f"{len(rows)} points done; results in {os.path.join(workdir, 'results.json')}")


if __name__ == "__main__":
    run_main(main)
