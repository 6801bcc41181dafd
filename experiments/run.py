"""Run one experiment: `python -m experiments.run --config=configs/mnist1d_cnn.py --workdir=DIR`.

Override any field with `--config.a.b=value`; pick a variant with `--config=configs/x.py:arg`.
Running again on the same workdir resumes from its newest checkpoint.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments.cli import config_and_workdir, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.")


def main(argv: list[str]) -> None:
    """Validate flags, then train and evaluate (run_main exits 3 if training diverges)."""
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR, "configs/mnist1d_cnn.py")
    from cnn_rnn.training.loop import train_and_evaluate

    train_and_evaluate(config, workdir)


if __name__ == "__main__":
    run_main(main)
