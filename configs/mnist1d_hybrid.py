"""CNN+RNN hybrid on MNIST-1D: two 1-D conv blocks (40 -> 10 steps) feed a GRU.

`configs/mnist1d_hybrid.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The CNN+GRU hybrid config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=2000))
    return base_config(
        model=dict(name="cnn_rnn_hybrid", features=(32, 64), kernel_size=5, pool=2, batch_norm=True,
                   cell="gru", hidden=128),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=3e-3, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0, weight_decay=1e-4)
