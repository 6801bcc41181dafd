"""LSTM on MNIST-1D (forget-gate bias 1.0).

`configs/mnist1d_lstm.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The LSTM config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=2000))
    return base_config(
        model=dict(name="lstm", hidden=128, num_layers=1, bidirectional=False, forget_bias=1.0),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=3e-3, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0, weight_decay=1e-4)
