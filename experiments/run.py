"""Run one experiment: `python -m experiments.run --config=configs/mnist1d_cnn.py --workdir=DIR`.

Override any field with `--config.a.b=value`; pick a variant with `--config=configs/x.py:arg`.
Running again on the same workdir resumes from its newest checkpoint.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments.cli import fail, load_config, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.")


def main(argv: list[str]) -> None:
    """Validate flags, then train and evaluate."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --config=..., --workdir=..., "
             "--config.<field>=value")
    if _CONFIG.value is None:
        fail("--config: required; e.g. --config=configs/mnist1d_cnn.py")
    if not _WORKDIR.value:
        fail("--workdir: required; a directory for checkpoints and metrics")
    config = load_config(_CONFIG)
    from cnn_rnn.training.loop import NonFiniteError, train_and_evaluate

    try:
        train_and_evaluate(config, _WORKDIR.value)
    except NonFiniteError as e:
        fail(str(e), code=3)


if __name__ == "__main__":
    run_main(main)
