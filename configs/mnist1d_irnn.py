"""IRNN (Le et al. 2015) on MNIST-1D: ReLU RNN with W_h initialised to the identity.

It needs a small learning rate and gradient clipping.

`configs/mnist1d_irnn.py:shuffle_positions=true` for the shuffled variant; `steps=N` to change
the training length.
"""

import ml_collections

from configs.common import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The IRNN config on MNIST-1D, standard or shuffled positions."""
    a = parse_arg(arg, dict(shuffle_positions=False, steps=3000))
    return base_config(
        model=dict(name="irnn", hidden=128, identity_scale=1.0),
        data=dict(name="mnist1d", shuffle_positions=a["shuffle_positions"]),
        steps=a["steps"], batch_size=128, learning_rate=5e-4, schedule="cosine",
        warmup_steps=100, grad_clip_norm=1.0)
