"""Temporal convolutional network (TCN): stacked residual blocks of dilated causal convolutions.

After Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent
Networks for Sequence Modeling".

A causal convolution with kernel size k and dilation d sees only the present and the past:
    y_t = sum_{j=0}^{k-1} W_j x_{t - d*j} + b          (x_s = 0 for s < 0)
Level i of the TCN is a residual block of two such convolutions with d = 2^i:
    h = Dropout(ReLU(CausalConv_d(x)));  h = Dropout(ReLU(CausalConv_d(h)))
    out = ReLU(x' + h),   x' = x, or a 1x1 conv of x when the channel count changes
so L levels see R = 1 + 2(k-1)(2^L - 1) steps into the past (the receptive field): the history
grows exponentially with depth, and every step is computed at once (no recurrence). Optional
weight normalisation reparameterises each kernel as W = g * V / ||V|| per output channel.
`init_style="torch"` starts where the authors' PyTorch code starts (`torch_init.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import (
    check_choice,
    check_int,
    check_int_tuple,
    check_number,
    check_rate,
)
from cnn_rnn.models import torch_init
from cnn_rnn.models.readout import last_valid_step
from cnn_rnn.models.registry import register_model

Array = jax.Array
INIT_STYLES = ("flax", "torch")


def receptive_field(kernel_size: int, num_levels: int) -> int:
    """Return how many input steps one TCN output sees: 1 + 2(k-1)(2^L - 1).

    Each level has two causal convs with dilation 2^i, each adding (k-1) 2^i steps of history.
    """
    return 1 + 2 * (kernel_size - 1) * (2**num_levels - 1)


class CausalConv(nn.Module):
    """A dilated causal 1-D convolution [B, T, C] -> [B, T, features] (left zero-padding).

    Attributes:
      features: output channels.
      kernel_size: taps k.
      dilation: spacing d between taps.
      weight_norm: reparameterise the kernel as g * V / ||V|| (per output channel).
      init_style: "flax" (LeCun normal, zero bias, g = 1) or "torch" (PyTorch's defaults; a
        torch weight-normed layer starts g at ||V||, whose expected value g starts at here).

    """

    features: int
    kernel_size: int
    dilation: int = 1
    weight_norm: bool = False
    init_style: str = "flax"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the convolution; output t depends on inputs t, t-d, ..., t-(k-1)d only."""
        torch = self.init_style == "torch"
        conv = nn.Conv(self.features, (self.kernel_size,), kernel_dilation=(self.dilation,),
                       padding="CAUSAL", name="conv",
                       **(torch_init.layer(x.shape[-1] * self.kernel_size) if torch else {}))
        if not self.weight_norm:
            return conv(x)
        scale = nn.initializers.constant(torch_init.KERNEL_NORM) if torch else nn.initializers.ones
        return nn.WeightNorm(conv, scale_init=scale, name="weight_norm")(x)


class TemporalBlock(nn.Module):
    """One TCN level: two dilated causal convs with ReLU and dropout, plus a residual.

    Attributes:
      features: output channels.
      kernel_size: taps of both convolutions.
      dilation: dilation of both convolutions (2^level in a TCN).
      dropout: dropout rate after each ReLU.
      weight_norm: weight normalisation on both convolutions.
      init_style: "flax" or "torch" (see CausalConv); "torch" starts the 1x1 projection's
        kernel at N(0, 0.01), as the authors' code does.

    """

    features: int
    kernel_size: int
    dilation: int
    dropout: float = 0.0
    weight_norm: bool = True
    init_style: str = "flax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Apply the block to x [B, T, C]."""
        h = x
        for _ in range(2):
            h = CausalConv(self.features, self.kernel_size, self.dilation, self.weight_norm,
                           self.init_style)(h)
            h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
        # A 1x1 conv matches channel counts so that the residual can be added.
        torch = {} if self.init_style != "torch" else dict(
            kernel_init=nn.initializers.normal(0.01), bias_init=torch_init.bias(x.shape[-1]))
        res = (x if x.shape[-1] == self.features
               else nn.Conv(self.features, (1,), name="proj", **torch)(x))
        return nn.relu(res + h)


@register_model("tcn")
class TCN(nn.Module):
    """Temporal convolutional network for sequences [B, T, C].

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      levels: number of residual blocks; block i has dilation 2^i.
      hidden: channels of every block (when `channels` is not given).
      channels: channels per block, e.g. (32, 32, 64); when set it replaces levels x hidden.
      kernel_size: taps k of every convolution.
      dropout: dropout rate after every ReLU inside the blocks.
      weight_norm: weight normalisation on the dilated convolutions (as in Bai et al.).
      init_style: "flax" (flax's defaults) or "torch" (the weights Bai et al.'s PyTorch code
        starts from: PyTorch's defaults, N(0, 0.01) for the 1x1 projections; see
        docs/paper_protocol.md).
      head_std: > 0: the output layer's kernel starts at N(0, head_std) (the authors' adding and
        copy code: 0.01); 0: the `init_style` scheme's default.
      return_sequences: many-to-many (an output at every step, [B, T, num_outputs]); otherwise
        many-to-one from the last step, or with a mask the last valid step ([B, num_outputs]).

    """

    num_outputs: int
    levels: int = 4
    hidden: int = 32
    channels: Sequence[int] | None = None
    kernel_size: int = 3
    dropout: float = 0.0
    weight_norm: bool = True
    init_style: str = "flax"
    head_std: float = 0.0
    return_sequences: bool = False

    def __post_init__(self):
        # Validate at construction, so build_model reports a bad value as a ConfigError.
        if self.channels is not None:
            check_int_tuple("model.channels", self.channels)
        for field in ("levels", "hidden", "kernel_size"):
            check_int(f"model.{field}", getattr(self, field), 1)
        check_rate("model.dropout", self.dropout)
        check_choice("model.init_style", self.init_style, INIT_STYLES)
        check_number("model.head_std", self.head_std)
        super().__post_init__()

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each level."""
        return tuple(self.channels) if self.channels is not None else (self.hidden,) * self.levels

    @property
    def receptive_field(self) -> int:
        """Input steps that the output at one step sees (see `receptive_field`)."""
        return receptive_field(self.kernel_size, len(self.widths))

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Map inputs [B, T, C] to [B, T, num_outputs] (return_sequences) or [B, num_outputs].

        Padded steps (mask False) are zeroed; causality makes right-padding invisible to the
        valid steps, so the many-to-one output is that of the unpadded sequence.
        """
        x = inputs if mask is None else inputs * mask[..., None].astype(inputs.dtype)
        for i, width in enumerate(self.widths):
            x = TemporalBlock(width, self.kernel_size, 2**i, self.dropout, self.weight_norm,
                              self.init_style)(x, train)
        if not self.return_sequences:
            x = last_valid_step(x, mask)
        head = torch_init.layer(x.shape[-1]) if self.init_style == "torch" else {}
        if self.head_std > 0:
            head["kernel_init"] = nn.initializers.normal(self.head_std)
        return nn.Dense(self.num_outputs, **head)(x)

    # --- incremental form (see cnn_rnn/models/streaming.py) ----------------------------------

    @nn.nowrap
    def init_carry(self, batch: int, features: int,
                   dtype: Any = jnp.float32) -> tuple[tuple[Array, Array], ...]:
        """Zero buffers, per level, of the last (k-1)d inputs of its two convolutions.

        The full pass pads each sequence with zeros on the left (causal padding): the same as
        buffers that start at zero.
        """
        out, width_in = [], features
        for i, width in enumerate(self.widths):
            span = (self.kernel_size - 1) * 2**i
            out.append((jnp.zeros((batch, span, width_in), dtype),
                        jnp.zeros((batch, span, width), dtype)))
            width_in = width
        return tuple(out)

    @nn.nowrap
    def step(self, variables: Mapping[str, Any], carry: tuple[tuple[Array, Array], ...],
             x_t: Array, mask_t: Array | None = None) -> tuple[tuple, Array]:
        """One new step x_t [B, C]: (new buffers, y_t), each conv evaluated at the new step only.

        A convolution at step t reads inputs t, t-d, ..., t-(k-1)d: the taps [B, k, C] taken
        every d-th entry of (buffer, x_t), given to the level's own conv module with dilation 1,
        whose last output is the dilated conv's output at t (O(k) work, whatever the history).
        """
        params = variables["params"]
        x = x_t if mask_t is None else x_t * mask_t[:, None].astype(x_t.dtype)
        new = []
        for i, (width, buffers) in enumerate(zip(self.widths, carry, strict=True)):
            p, d = params[f"TemporalBlock_{i}"], 2**i
            h, windows = x, []
            for j, buffer in enumerate(buffers):
                window = jnp.concatenate([buffer, h[:, None]], axis=1)
                conv = CausalConv(width, self.kernel_size, 1, self.weight_norm, parent=None)
                h = nn.relu(conv.apply({"params": p[f"CausalConv_{j}"]}, window[:, ::d])[:, -1])
                windows.append(window[:, 1:])
            res = x if "proj" not in p else x @ p["proj"]["kernel"][0] + p["proj"]["bias"]
            x = nn.relu(res + h)
            new.append(tuple(windows))
        dense = params["Dense_0"]
        return tuple(new), x @ dense["kernel"] + dense["bias"]
