"""Run one experiment: `python -m experiments.run --config=configs/mnist1d_cnn.py --workdir=DIR`.

Override any field with `--config.a.b=value`; pick a variant with `--config=configs/x.py:arg`.
`--list` lists the config files with their arguments; `--show_config` prints the resolved config
(after overrides) and exits. Running again on the same workdir resumes from its newest
checkpoint; Ctrl-C or SIGTERM saves a checkpoint at the step reached first.

On several hosts, run one process per host with `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (the arguments of `jax.distributed.initialize`), or with none
of them under a scheduler JAX detects (SLURM, Open MPI, TPU pod, Kubernetes). Without flags or
scheduler the run is one plain process.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments.cli import config_and_workdir, fail, load_config, run_main

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, configs/<name>.py[:key=value,...] (see --list).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.")
_LIST = flags.DEFINE_bool("list", False, "List the config files, their arguments and a line "
                          "about each, then exit.")
_SHOW = flags.DEFINE_bool("show_config", False, "Print the resolved config (after overrides) "
                          "and exit without training.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordinator (jax.distributed); "
    "default: detected from the cluster, or a single process.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 .. N-1.")


def main(argv: list[str]) -> None:
    """Validate flags, join the cluster if any, then train and evaluate."""
    if _LIST.value:
        from experiments.config_catalog import describe

        print(describe("configs"))
        return
    if _SHOW.value:
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}")
        if _CONFIG.value is None:
            fail("--config: required with --show_config; e.g. --config=configs/mnist1d_cnn.py")
        print(load_config(_CONFIG))
        return
    config, workdir = config_and_workdir(argv, _CONFIG, _WORKDIR, "experiments.run")
    from cnn_rnn.training import distributed

    distributed.initialize(distributed.ClusterFlags(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value))
    from cnn_rnn.training.loop import train_and_evaluate

    train_and_evaluate(config, workdir)


if __name__ == "__main__":
    run_main(main)
