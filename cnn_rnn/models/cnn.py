"""Convolutional networks: conv -> (BatchNorm) -> ReLU -> pool blocks, then a dense head.

A convolution applies the same kernel W at every position (weight sharing over space):
    y[p] = sum_k W[k] x[p + k] + b
so its parameter count does not depend on the input length, and all positions are computed at
once, in parallel, unlike a recurrence that must step through time.

Models here: `cnn1d` (sequences [B, T, C]), `cnn2d` (images [B, H, W, C]) and `resnet` (the
CIFAR ResNet of He et al. 2016, depth 6n+2, for images such as 32x32x3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_int_tuple, check_rate
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import register_model


class ConvBlock(nn.Module):
    """conv -> BatchNorm (optional) -> ReLU (optional) -> max-pool (optional), any spatial dims.

    Attributes:
      features: output channels.
      kernel_size: kernel extent per spatial dim, e.g. (5,) or (3, 3).
      pool: max-pool window (and stride) after the activation; 1 = no pooling.
      batch_norm: BatchNorm after the convolution (the conv then has no bias: BN's shift is one).
      axis_name: pmap axis over which BatchNorm averages batch statistics in training.
      stride: convolution stride (ResNet downsamples with stride 2 instead of pooling).
      relu: apply ReLU; False for the last conv of a residual branch, activated after the sum.

    """

    features: int
    kernel_size: Sequence[int]
    pool: int = 2
    batch_norm: bool = True
    axis_name: str | None = None
    stride: int = 1
    relu: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Apply the block to x [B, *spatial, C]."""
        ndim = len(self.kernel_size)
        x = nn.Conv(self.features, tuple(self.kernel_size), strides=(self.stride,) * ndim,
                    padding="SAME", use_bias=not self.batch_norm)(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             axis_name=self.axis_name if train else None)(x)
        if self.relu:
            x = nn.relu(x)
        if self.pool > 1:
            window = (self.pool,) * ndim
            x = nn.max_pool(x, window, strides=window, padding="SAME")
        return x


def _apply_mask(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Zero the padded positions of x [B, *spatial, C]; mask covers the leading spatial axes."""
    if mask is None:
        return x
    m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
    return x * m.astype(x.dtype)


class ConvNet(nn.Module):
    """Conv blocks, then global average pool or flatten, then a dense head (any spatial dims).

    Not registered itself: `CNN1D` and `CNN2D` fix the number of spatial dims.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      features: channels of each conv block.
      kernel_size: width of every kernel (square/cubic in 2-D/3-D).
      pool: max-pool window after each block (1 = none).
      batch_norm: BatchNorm after each convolution (statistics synchronised across devices).
      head: "flatten" (position-aware, like the MNIST-1D paper) or "mean" (global average pool,
        so the parameter count is independent of the input size).
      hidden: width of the dense layer before the output (0 = none).
      dropout: dropout rate before the head.
      axis_name: pmap axis for BatchNorm (set by the trainer).

    """

    spatial_dims: ClassVar[int] = 1

    num_outputs: int
    features: Sequence[int] = (32, 64, 64)
    kernel_size: int = 5
    pool: int = 2
    batch_norm: bool = True
    head: str = "flatten"
    hidden: int = 128
    dropout: float = 0.0
    axis_name: str | None = None

    def __post_init__(self):
        # Validate at construction, so build_model reports a bad value as a ConfigError.
        check_choice("model.head", self.head, ("flatten", "mean"))
        check_int_tuple("model.features", self.features)
        for field in ("kernel_size", "pool"):
            check_int(f"model.{field}", getattr(self, field), 1)
        check_int("model.hidden", self.hidden, 0)
        check_rate("model.dropout", self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Logits [B, num_outputs] for inputs [B, *spatial, C]; padded steps (mask False) are 0."""
        if inputs.ndim != self.spatial_dims + 2:
            raise ValueError(f"{type(self).__name__} expects inputs [B, {self.spatial_dims} "
                             f"spatial dims, C], got shape {inputs.shape}")
        x = _apply_mask(inputs, mask)
        kernel = (self.kernel_size,) * self.spatial_dims
        for f in self.features:
            x = ConvBlock(f, kernel, self.pool, self.batch_norm, self.axis_name)(x, train)
        if self.head == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_outputs)(x)


@register_model("cnn1d")
class CNN1D(ConvNet):
    """1-D CNN for sequences [B, T, C]: conv blocks, global average pool or flatten, dense head.

    Fields as in `ConvNet`.
    """

    spatial_dims: ClassVar[int] = 1


@register_model("cnn2d")
class CNN2D(ConvNet):
    """2-D CNN for images [B, H, W, C]: (conv 3x3 -> BN -> ReLU -> max-pool 2x2) blocks, head.

    Fields as in `ConvNet`, with 3x3 kernels by default (28x28 or 32x32 images).
    """

    spatial_dims: ClassVar[int] = 2

    kernel_size: int = 3


class BasicBlock(nn.Module):
    """The ResNet basic block: y = ReLU(F(x) + S(x)), F = conv3x3-BN-ReLU-conv3x3-BN.

    The shortcut S is the identity when the shape is unchanged. When the block downsamples
    (stride 2) and widens, S is either a 1x1 conv + BN ("projection", He et al. option B) or
    strided subsampling with zero-padded extra channels ("identity", option A, no parameters).

    Attributes:
      features: output channels.
      stride: stride of the first conv and of the shortcut.
      shortcut: "projection" or "identity".
      axis_name: pmap axis for BatchNorm.

    """

    features: int
    stride: int = 1
    shortcut: str = "projection"
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Apply the block to x [B, H, W, C]."""
        conv = dict(features=self.features, pool=1, axis_name=self.axis_name)
        y = ConvBlock(kernel_size=(3, 3), stride=self.stride, **conv)(x, train)
        # No ReLU before the sum: the residual adds to a pre-activation.
        y = ConvBlock(kernel_size=(3, 3), relu=False, **conv)(y, train)
        if self.stride != 1 or x.shape[-1] != self.features:
            if self.shortcut == "projection":
                x = ConvBlock(kernel_size=(1, 1), stride=self.stride, relu=False, **conv)(x, train)
            else:
                x = x[:, :: self.stride, :: self.stride, :]
                extra = self.features - x.shape[-1]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(x + y)


@register_model("resnet")
class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2) for images [B, H, W, C].

    conv3x3(width) -> BN -> ReLU, then three stages of n basic blocks with width, 2*width and
    4*width channels (the 2nd and 3rd stages start with stride 2), global average pool, dense.
    depth = 6n + 2 counts the weighted layers: 20 -> n=3 (0.27M params at width 16), 8 -> n=1.

    Attributes:
      num_outputs: classes (set from the task).
      depth: 6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, 110 ...).
      width: channels of the first stage.
      shortcut: "projection" (1x1 conv when the shape changes) or "identity" (zero-padding).
      axis_name: pmap axis for BatchNorm (set by the trainer).

    """

    num_outputs: int
    depth: int = 20
    width: int = 16
    shortcut: str = "projection"
    axis_name: str | None = None

    def __post_init__(self):
        if check_int("model.depth", self.depth, 8) % 6 != 2:
            raise ConfigError("model.depth", f"must be 6n+2 with n >= 1 (8, 14, 20 ...), got "
                              f"{self.depth}")
        check_int("model.width", self.width, 1)
        check_choice("model.shortcut", self.shortcut, ("projection", "identity"))
        super().__post_init__()

    @property
    def blocks_per_stage(self) -> int:
        """Basic blocks per stage: n in depth = 6n + 2."""
        return (self.depth - 2) // 6

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Logits [B, num_outputs] for images [B, H, W, C] (mask, if any, zeroes rows/pixels)."""
        if inputs.ndim != 4:
            raise ValueError(f"ResNet expects images [B, H, W, C], got shape {inputs.shape}")
        x = _apply_mask(inputs, mask)
        x = ConvBlock(self.width, (3, 3), pool=1, axis_name=self.axis_name)(x, train)
        for stage in range(3):
            for i in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                x = BasicBlock(self.width * 2**stage, stride, self.shortcut,
                               self.axis_name)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_outputs)(x)
