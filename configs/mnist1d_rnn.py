"""Elman tanh-RNN on MNIST-1D, orthogonal recurrent init.

`recurrent_init=default` in an ablation shows what the plain Gaussian init loses.

`configs/mnist1d_rnn.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The tanh-RNN config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=3000))
    return base_config(
        model=dict(name="rnn", hidden=128, activation="tanh", recurrent_init="orthogonal"),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=1e-3, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0)
