"""minGRU (Feng et al. 2024) on MNIST-1D: two residual blocks, recurrence by associative scan.

`configs/mnist1d_mingru.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The minGRU config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=2000))
    return base_config(
        model=dict(name="mingru", hidden=64, d_model=64, num_layers=2, pool="mean",
                   impl="parallel"),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=3e-3, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0, weight_decay=1e-4)
