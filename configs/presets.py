"""Model settings shared by the task configs, sized by parameter budget as in Bai et al. 2018.

Bai et al. compare architectures at (roughly) equal parameter counts: ~70K for the adding problem
and sequential MNIST, ~16K for copy memory. `recurrent_hidden` solves for the hidden size that
spends the budget, so an LSTM (4 gates) gets a smaller state than a tanh-RNN (1 gate).
"""

from __future__ import annotations

import math
from typing import Any

RECURRENT_GATES = {"rnn": 1, "irnn": 1, "lstm": 4, "gru": 3, "mingru": 2, "lru": 2}
MODELS = ("rnn", "irnn", "lstm", "gru", "tcn", "transformer", "lru", "mingru", "cnn1d")


def check_budget(budget: Any) -> int:
    """`budget` if it is a positive integer, else ValueError (the config argument's message).

    A negative or zero budget is meaningless; sizing from it would silently build the smallest
    model instead.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ValueError(f"config argument budget={budget!r}: the parameter budget must be a "
                         "positive integer; accepted: e.g. budget=20000")
    return budget


def recurrent_hidden(model: str, budget: int, input_dim: int, outputs: int) -> int:
    """Hidden size H with G*(H*H + H*D + 2H) + H*O about `budget` (one layer)."""
    g = RECURRENT_GATES[model]
    a, b, c = g, g * (input_dim + 2) + outputs, -budget
    return max(4, int((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def model_config(model: str, *, budget: int, input_dim: int, outputs: int,
                 tcn: dict[str, Any], many_to_many: bool = False) -> dict[str, Any]:
    """`config.model` for `model` at roughly `budget` parameters.

    Args:
      model: one of MODELS.
      budget: parameter budget for recurrent models (the TCN uses the paper's `tcn` settings).
      input_dim: channels per step.
      outputs: task outputs (classes or targets).
      tcn: kwargs of the TCN (levels, hidden, kernel_size, dropout) from the paper's tables.
      many_to_many: whether the task needs an output per step (transformer becomes causal).
    """
    check_budget(budget)
    if model in ("rnn", "lstm", "gru"):
        return dict(name=model, hidden=recurrent_hidden(model, budget, input_dim, outputs))
    if model == "irnn":
        return dict(name="irnn", hidden=recurrent_hidden("rnn", budget, input_dim, outputs))
    if model == "tcn":
        return dict(name="tcn", **tcn)
    if model in ("lru", "mingru"):
        # Two blocks of the model's own recurrence + MLP; width from half the budget per block.
        width = max(8, int(math.sqrt(budget / (2 * 4 * RECURRENT_GATES[model]))))
        return dict(name=model, hidden=width, num_layers=2)
    if model == "transformer":
        d = max(16, int(math.sqrt(budget / 24)) // 4 * 4)
        return dict(name="transformer", d_model=d, num_heads=4, num_layers=2, mlp_dim=2 * d,
                    dropout=0.0, positions="sinusoidal", causal=many_to_many,
                    pool="last" if many_to_many else "mean")
    if model == "cnn1d":
        return dict(name="cnn1d", head="mean")
    raise ValueError(f"config argument model={model!r} unknown; accepted: {', '.join(MODELS)}")
