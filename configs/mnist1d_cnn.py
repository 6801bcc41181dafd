"""1-D CNN on MNIST-1D (paper: CNN 94%).

`configs/mnist1d_cnn.py:shuffle_positions=true` for the shuffled variant.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The 1-D CNN config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=3000))
    return base_config(
        model=dict(name="cnn1d", features=(32, 64, 64), kernel_size=5, pool=2, batch_norm=True,
                   head="flatten", hidden=128, dropout=0.0),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=3e-3, schedule="cosine",
        weight_decay=1e-4)
