"""Convolutional networks: conv -> (BatchNorm) -> ReLU -> pool blocks, then a dense head.

A convolution applies the same kernel W at every position (weight sharing over space):
    y[p] = sum_k W[k] x[p + k] + b
so its parameter count does not depend on the input length, and all positions are computed at
once, in parallel, unlike a recurrence that must step through time.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.models.registry import register_model


class ConvBlock(nn.Module):
    """conv -> BatchNorm (optional) -> ReLU -> max-pool (optional), any number of spatial dims."""

    features: int
    kernel_size: Sequence[int]
    pool: int = 2
    batch_norm: bool = True
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Apply the block to x [B, *spatial, C]."""
        x = nn.Conv(self.features, tuple(self.kernel_size), padding="SAME",
                    use_bias=not self.batch_norm)(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             axis_name=self.axis_name if train else None)(x)
        x = nn.relu(x)
        if self.pool > 1:
            window = (self.pool,) * len(self.kernel_size)
            x = nn.max_pool(x, window, strides=window, padding="SAME")
        return x


@register_model("cnn1d")
class CNN1D(nn.Module):
    """1-D CNN for sequences [B, T, C]: conv blocks, global average pool or flatten, dense head.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      features: channels of each conv block.
      kernel_size: width of every kernel.
      pool: max-pool window after each block (1 = none).
      batch_norm: BatchNorm after each convolution (statistics synchronised across devices).
      head: "flatten" (position-aware, like the MNIST-1D paper) or "mean" (global average pool,
        so the parameter count is independent of the input length).
      hidden: width of the dense layer before the output (0 = none).
      dropout: dropout rate before the head.
      axis_name: pmap axis for BatchNorm (set by the trainer).
    """

    num_outputs: int
    features: Sequence[int] = (32, 64, 64)
    kernel_size: int = 5
    pool: int = 2
    batch_norm: bool = True
    head: str = "flatten"
    hidden: int = 128
    dropout: float = 0.0
    axis_name: str | None = None

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Logits [B, num_outputs] for inputs [B, T, C]; padded steps (mask False) are zeroed."""
        if self.head not in ("flatten", "mean"):
            raise ValueError(f"head must be 'flatten' or 'mean', got {self.head!r}")
        x = inputs
        if mask is not None:
            x = x * mask[..., None].astype(x.dtype)
        for f in self.features:
            x = ConvBlock(f, (self.kernel_size,), self.pool, self.batch_norm, self.axis_name)(
                x, train)
        x = x.reshape(x.shape[0], -1) if self.head == "flatten" else jnp.mean(x, axis=1)
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_outputs)(x)
