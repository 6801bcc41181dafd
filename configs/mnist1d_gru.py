"""GRU on MNIST-1D (paper: GRU 91%).

Target: eval accuracy >= 0.91 within 5 minutes on a 2-core CPU (measured: about 0.98 after 2000
steps, about 75 s).

`configs/mnist1d_gru.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The GRU config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=2000))
    return base_config(
        model=dict(name="gru", hidden=128, num_layers=1, bidirectional=False),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=3e-3, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0, weight_decay=1e-4)
