"""The quickstart demo: a CNN and a GRU on MNIST-1D, side by side.

`python -m experiments.demo --workdir=runs/demo` trains `configs/mnist1d_cnn.py` and
`configs/mnist1d_gru.py` (a few minutes on a laptop CPU, no download), then prints a comparison
(parameters, accuracy against the MNIST-1D paper, training time, steps per second) and writes
`<workdir>/learning_curves.png`. Rerunning skips what is finished.
"""

from __future__ import annotations

import os

from absl import flags

from experiments.cli import fail, local_workdir, run_main

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Directory for both runs and the figure.")
_STEPS = flags.DEFINE_integer("steps", 0, "Override both configs' steps (0 keeps theirs).")

PAPER_ACCURACY = {"cnn1d": 0.94, "gru": 0.91}  # Greydanus & Kobak 2020, Table 1


def plot_learning_curves(workdirs: dict[str, str], path: str) -> None:
    """Eval accuracy and train loss against step for each run, one figure.

    `workdirs` maps a model name (as the comparison table names it, e.g. "cnn1d") to its run;
    the accuracy the MNIST-1D paper reports for it is a dashed line in the same colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_rnn.training.metrics import read_metrics

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, wd in workdirs.items():
        train, ev = read_metrics(wd, "train"), read_metrics(wd, "eval")
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
        (line,) = ax_acc.plot([r["step"] for r in ev], [r["accuracy"] for r in ev], "o-",
                              label=label)
        if label in PAPER_ACCURACY:
            ax_acc.axhline(PAPER_ACCURACY[label], color=line.get_color(), lw=0.8, ls="--",
                           label=f"{label}, paper: {PAPER_ACCURACY[label]:.0%}")
    ax_loss.set(xlabel="step", ylabel="train loss", yscale="log", title="training loss")
    ax_acc.set(xlabel="step", ylabel="eval accuracy", title="MNIST-1D test accuracy")
    ax_loss.legend()
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    """Train both models, then compare them."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --workdir=DIR, --steps=N")
    if _STEPS.value < 0:
        fail(f"--steps: must be >= 0, got {_STEPS.value}")
    local_workdir(_WORKDIR.value, "experiments.demo")
    from cnn_rnn.sweep import Point, run_sweep
    from cnn_rnn.tables import markdown_table
    from configs import mnist1d_cnn, mnist1d_gru

    points = []
    for label, module in (("cnn", mnist1d_cnn), ("gru", mnist1d_gru)):
        config = module.get_config()
        if _STEPS.value:
            config.steps = _STEPS.value
            config.eval_every = config.checkpoint_every = config.log_every = _STEPS.value
        points.append(Point(label, config, {"paper": PAPER_ACCURACY[config.model.name]}))
    rows = run_sweep(points, _WORKDIR.value)
    for row in rows:
        row["steps_per_s"] = row["step"] / row["train_seconds"] if row["train_seconds"] else None
    table = markdown_table(rows, [("model", "model"), ("params", "params"),
                                  ("eval accuracy", "eval.accuracy"), ("paper", "paper"),
                                  ("train s", "train_seconds"), ("steps/s", "steps_per_s")])
    figure = os.path.join(_WORKDIR.value, "learning_curves.png")
    plot_learning_curves({r["model"]: os.path.join(_WORKDIR.value, r["name"]) for r in rows},
                         figure)
    print("\nMNIST-1D: a CNN computes every position at once; a GRU steps through the 40 "
          "positions in order.\n")
    print(table)
    print(f"\nlearning curves: {figure}")


if __name__ == "__main__":
    run_main(main)
