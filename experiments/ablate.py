"""Run an ablation with gradient-flow probes and write its report.

    python -m experiments.ablate --config=configs/ablations/vanishing_gradients.py --workdir=DIR
    python -m experiments.ablate --config=configs/ablations/vanishing_gradients.py:smoke ...

The config file defines `get_config(arg)` (the grid, overridable with `--config.<field>=value`;
it must have a `probe` section: batch_size, num_probes (0 = exact Jacobian norms), threshold,
and `beat_ratio`) and `get_points(config) -> list[cnn_rnn.sweep.Point]`. Every point is trained
(skipped when finished; resumed when interrupted), then probed at initialisation and at every
checkpoint it saved (cached in the point's probe.json). At the end DIR holds results.json (every
row with its probe profiles and training history), analysis.json, figures/*.png and report.md.
`--report_only` trains nothing and writes the report of the points finished so far (marked
partial): for a run that spans sessions, interrupted and resumed by rerunning its command.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import flags
from ml_collections import config_flags

from cnn_rnn.errors import ConfigError
from experiments.cli import (
    command_line,
    config_and_workdir,
    define_record,
    define_report_only,
    fail,
    load_points_module,
    points_rows,
    record_folder,
    run_main,
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Ablation config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory holding one folder per point.")
_REPORT_ONLY = define_report_only("ablation")
_RECORD = define_record()
flags.declare_key_flag("report_only")  # listed by --help, as the flags defined here
flags.declare_key_flag("record")


def validate_probe(probe: Any) -> None:
    """Raise ConfigError naming the first bad `--config.probe.<field>` and its accepted range.

    Checked before any point trains: the probe runs after each point's training.
    """
    minimums = {"batch_size": 1, "num_probes": 0}
    if "checkpoints" in probe:  # the vanishing-gradients config divides steps by it
        minimums["checkpoints"] = 1
    for key, minimum in minimums.items():
        value = probe.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            exact = " (0 = exact Jacobian norms)" if key == "num_probes" else ""
            raise ConfigError(f"--config.probe.{key}",
                              f"must be an integer >= {minimum}{exact}, got {value!r}")
    threshold = probe.get("threshold")
    if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1):
        raise ConfigError("--config.probe.threshold", "must be a number in (0, 1] (the relative "
                          f"gradient level of 'steps in the past'), got {threshold!r}")


def main(argv: list[str]) -> None:
    """Validate, run and probe every point, write the report."""
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR, "experiments.ablate")
    record = record_folder(_RECORD, workdir, "experiments.ablate")
    if "probe" not in config:
        fail("--config: the config has no `probe` section; it is not an ablation config")
    validate_probe(config.probe)
    module = load_points_module(flags.FLAGS["config"].config_filename, "an ablation")
    # Late imports: flag errors above stay fast and free of JAX start-up.
    from cnn_rnn.diagnostics.ablation import ProbeHook
    from cnn_rnn.diagnostics.report import write_ablation_report

    t0 = time.time()
    probe = config.probe
    hooks = [ProbeHook(probe.batch_size, probe.num_probes or None, probe.threshold)]
    if "newton" in config:  # Newton solves of the trained long points (the `paper` variant)
        from cnn_rnn.diagnostics.newton_points import NewtonHook

        hooks.append(NewtonHook.from_config(config.newton.to_dict()))
    try:
        points = module.get_points(config)
    except (ValueError, KeyError) as e:  # a bad grid value, e.g. an unknown architecture
        fail(f"--config: {e}")

    def after_point(point: Any, point_dir: str, row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for hook in hooks for k, v in hook(point, point_dir, row).items()}

    rows = points_rows(points, workdir, report_only=_REPORT_ONLY.value,
                       after_point=after_point, record=record)
    paths = write_ablation_report(rows, workdir, config,
                                  command=command_line("experiments.ablate"),
                                  total_points=len(points))
    print(f"{len(rows)} points done in {time.time() - t0:.0f}s; report: {paths['report']}; "
          f"results: {os.path.join(record or workdir, 'results.json')}")


if __name__ == "__main__":
    run_main(main)
