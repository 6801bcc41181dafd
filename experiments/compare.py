"""Trained runs side by side: one table and one PNG of learning curves.

    python -m experiments.compare W1 [W2 ...] [--output=curves.png]

Prints a markdown table (model, parameters, steps, final and best eval metric, the task's
baseline, train time) and writes the train loss and eval metric of every run against step, with
the baseline as a labelled line, to --output (default: compare.png in the current folder).
TensorBoard reads the same runs: `tensorboard --logdir=W` (pip install -e '.[viewer]').
"""

from __future__ import annotations

from absl import flags

from experiments.cli import fail, local_workdir, run_main

_OUTPUT = flags.DEFINE_string("output", "compare.png", "Where to write the learning curves.")


def main(argv: list[str]) -> None:
    """Read every run, print the table, write the figure."""
    workdirs = argv[1:]
    if not workdirs:
        fail("workdirs: required; e.g. python -m experiments.compare RUN1 RUN2")
    for workdir in workdirs:
        local_workdir(workdir, "experiments.compare", flag="workdirs")
    from cnn_rnn.inference import compare, outputs

    if not _OUTPUT.value.endswith(".png"):
        fail(f"output: {_OUTPUT.value} does not end in .png; accepted: a .png path")
    outputs.check_writable(_OUTPUT.value)
    runs = [compare.read_run(w) for w in workdirs]
    with outputs.all_or_nothing() as temp:
        path = compare.plot_curves(runs, _OUTPUT.value, temp)
    print(compare.comparison_table(runs))
    print(f"learning curves: {path}")


if __name__ == "__main__":
    run_main(main)
