"""Bai, Kolter & Koltun 2018 (arXiv:1803.01271): their protocol and their Table 2 numbers.

The protocol is as their code runs it. Used by configs/adding.py, copy.py and pixels.py
(`variant=paper`), the sweep configs/sweeps/paper.py and its report docs/results_paper.md.

The settings are those of the authors' code, github.com/locuslab/TCN (`TCN/adding_problem`,
`TCN/copy_memory`, `TCN/mnist_pixel`: argparse defaults and data generators), read line by line;
docs/paper_protocol.md lists each one beside ours, and every difference with its reason.
"""

from __future__ import annotations

import math
from typing import Any

# Fixed training sets of the paper's code, iterated in order for `epochs` epochs; the last batch
# of an epoch is partial, so an epoch is ceil(examples / batch) steps.
TASKS: dict[str, dict[str, Any]] = {
    # The code's defaults (30 channels, k=7) are for its default T=400 and give 96K parameters;
    # at T=600 the paper's TCN table (as recalled: docs/paper_protocol.md) has k=8, 8 levels of
    # 24: 70K, the paper's budget. `init_style="torch"`: the weights the code starts from (its
    # N(0, 0.01) on the weight-normed convs has no effect, locuslab/TCN issue #1; its adding and
    # copy heads do start at N(0, 0.01)).
    "adding": dict(T=600, examples=50_000, epochs=10, batch_size=32, budget=70_000,
                   tcn=dict(levels=8, hidden=24, kernel_size=8, dropout=0.0,
                            init_style="torch", head_std=0.01),
                   tcn_optimizer=dict(name="adam", learning_rate=4e-3, grad_clip_norm=0.0)),
    "copy": dict(T=1000, examples=10_000, epochs=50, batch_size=32, budget=16_000,
                 data=dict(encoding="value", marker="repeated"),
                 tcn=dict(levels=8, hidden=10, kernel_size=8, dropout=0.0,
                          init_style="torch", head_std=0.01),
                 # torch's RMSprop: no momentum, alpha (our `decay`) 0.99. The code's clipping
                 # (clip=1.0) runs before backward() and so clips nothing: no clipping here.
                 tcn_optimizer=dict(name="rmsprop", learning_rate=5e-4, grad_clip_norm=0.0,
                                    momentum=0.0, decay=0.99, eps_in_sqrt=False)),
    "mnist": dict(examples=60_000, epochs=20, batch_size=64, budget=70_000,
                  tcn=dict(levels=8, hidden=25, kernel_size=7, dropout=0.05,
                            init_style="torch"),
                  # lr / 10 after epoch 10 of 20: the `step` schedule (x0.1 halfway).
                  tcn_optimizer=dict(name="adam", learning_rate=2e-3, grad_clip_norm=0.0)),
}
# The recurrent baselines: the paper grid-searched optimizer, learning rate and clipping per task
# (its appendix); its code does not include them. One setting for every task and model here.
RECURRENT_OPTIMIZER = dict(name="adam", learning_rate=2e-3, grad_clip_norm=1.0)

# Table 2 of the paper: test MSE (adding), test cross-entropy (copy), test accuracy % (MNIST).
PUBLISHED: dict[str, dict[str, float]] = {
    "adding": dict(tcn=5.8e-5, gru=5.3e-5, lstm=0.164, rnn=0.177),
    "copy": dict(tcn=3.5e-5, gru=0.0197, lstm=0.0204, rnn=0.0202),
    "smnist": dict(tcn=99.0, gru=96.2, lstm=87.2, rnn=21.5),
    "pmnist": dict(tcn=97.2, gru=87.3, lstm=85.7, rnn=25.3),
}
MODELS = ("tcn", "gru", "lstm", "rnn")


def paper_steps(task: str) -> int:
    """The paper's step budget: epochs x ceil(training examples / batch size)."""
    t = TASKS[task]
    return t["epochs"] * math.ceil(t["examples"] / t["batch_size"])


def optimizer_settings(task: str, model: str) -> dict[str, Any]:
    """The fields of `config.optimizer` that the paper sets for `model` on `task`."""
    settings = dict(TASKS[task]["tcn_optimizer"] if model == "tcn" else RECURRENT_OPTIMIZER)
    if task == "mnist":  # the same decay for every model, as the TCN's: lr / 10 from halfway
        settings.update(schedule="step", decay_every=paper_steps(task) // 2, decay_rate=0.1,
                        decay_begin=0)
    return settings
