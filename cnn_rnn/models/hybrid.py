"""CNN + RNN hybrid: convolutional features at each position feed a recurrent layer.

The CNN shares its kernels over space and sees a local window; the RNN then shares its weights
over time and carries information across the whole sequence. Three input layouts:

  [B, T, C]        sequences: 1-D conv blocks along T, then the RNN over the (pooled) steps.
  [B, H, W, C]     images: 2-D conv blocks, then each width position (a column of the feature map)
                   is one time step, read left to right; with `image_steps="rows"` each row
                   is one step (a spectrogram [B, T, F, 1] with time first: the CRNN of
                   keyword spotting), and a row mask [B, H] is taken.
  [B, T, H, W, C]  short videos: the 2-D CNN applied to every frame, then the RNN over T.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_int_tuple
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.cnn import ConvBlock
from cnn_rnn.models.registry import register_model
from cnn_rnn.models.rnn import CELLS, RNN, RecurrentCell, ScanOptions, StatesHook

Array = jax.Array
SPATIAL_POOLS = ("flatten", "mean")
IMAGE_STEPS = ("columns", "rows")


def pool_mask(mask: Array, pool: int) -> Array:
    """Downsample a step mask [B, T] like a SAME max-pool with window = stride = `pool`.

    A pooled step is valid if any step in its window is. Padding follows XLA's SAME rule (the
    smaller half before), so the windows line up with the pooled features.
    """
    if pool <= 1:
        return mask
    t = mask.shape[1]
    pad = -t % pool
    m = jnp.pad(mask.astype(bool), ((0, 0), (pad // 2, pad - pad // 2)))
    return m.reshape(m.shape[0], -1, pool).any(axis=-1)


@register_model("cnn_rnn_hybrid")
class CNNRNNHybrid(ScanOptions, StatesHook):
    """Conv blocks (conv -> BatchNorm -> ReLU -> pool) whose per-position features feed an RNN.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      return_sequences: one output per (pooled) step; needs pool=1 for [B, T, C] inputs, so that
        the output has one entry per input step.
      features: channels of each conv block.
      kernel_size: kernel width (and height, for images and frames).
      pool: max-pool window after each block (1 = none).
      batch_norm: BatchNorm after each convolution.
      spatial_pool: how a column (image) or a frame (video) of features becomes one step's input
        vector: "flatten" (keeps position) or "mean" (global average).
      image_steps: which axis of an image is time: "columns" (W, the default) or "rows" (H; a
        mask [B, H] of real rows is then accepted and pooled with the features).
      cell: recurrent cell, one of CELLS ("rnn", "irnn", "lstm", "gru", or any other
        `register_cell` name), with that model's cell defaults.
      hidden: RNN hidden size.
      axis_name: pmap axis for BatchNorm (set by the trainer).
      num_layers, bidirectional, dropout, unroll, remat, remat_segment, input_projection, impl,
        dtype: the RNN layer's options (keyword-only), validated at construction like those of
        the recurrent models; see `ScanOptions`. remat defaults to "none", as before this model
        took the other values: "auto" was measured on the recurrent models' shapes only, not on
        the few wide steps a CNN leaves. impl="cudnn" needs cell="lstm"; dtype applies to the
        RNN only (the CNN runs in the inputs' dtype).

    `__call__` returns outputs [B, num_outputs] (or per step); `perturbations` (one
    [B, T', H*dirs] array per RNN layer, T' = steps after the CNN) are added to the RNN's hidden
    states, and `hidden_states` returns them (see `StatesHook`).

    With a mask, padded steps of [B, T, C] inputs are zeroed after every convolution (before
    pooling), so for pool <= 2 and BatchNorm in eval mode extra padding does not change the outputs
    (BatchNorm's training-mode statistics do include padded steps).
    """

    num_outputs: int
    return_sequences: bool = False
    features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    pool: int = 2
    batch_norm: bool = True
    spatial_pool: str = "flatten"
    image_steps: str = "columns"
    cell: str = "gru"
    hidden: int = 128
    axis_name: str | None = None
    _: dataclasses.KW_ONLY  # remat is one of the keyword-only ScanOptions
    remat: bool | str = "none"

    def __post_init__(self) -> None:
        check_choice("model.cell", self.cell, tuple(CELLS))
        check_choice("model.spatial_pool", self.spatial_pool, SPATIAL_POOLS)
        check_choice("model.image_steps", self.image_steps, IMAGE_STEPS)
        check_int_tuple("model.features", self.features, allow_empty=True)
        check_int("model.kernel_size", self.kernel_size, 1)
        check_int("model.pool", self.pool, 1)
        cell = self.make_cell()  # validates `hidden`
        # Here, not at the first call: the RNN layer would only reject it while running.
        if self.impl == "cudnn" and not cell.supports_cudnn:
            raise ConfigError("model.impl", f"'cudnn' needs cell='lstm', got cell={self.cell!r}")
        super().__post_init__()

    def make_cell(self) -> RecurrentCell:
        """Return the RNN's cell (an unbound template; it validates `hidden` itself)."""
        return CELLS[self.cell](hidden=self.hidden, parent=None)

    def _convs(self, x: Array, train: bool,
               mask: Array | None = None) -> tuple[Array, Array | None]:
        """Run the conv blocks over x [B, *spatial, C].

        With a mask over the first spatial axis (steps, or image rows), padding is zeroed after
        every convolution and the mask is pooled along with the features.
        """
        spatial = x.ndim - 2

        def zero_padding(x: Array) -> Array:
            if mask is None:
                return x
            return x * mask.reshape(mask.shape + (1,) * (x.ndim - 2)).astype(x.dtype)

        window = (self.pool,) * spatial
        x = zero_padding(x)
        for f in self.features:
            # Pool here rather than in ConvBlock, so that padding is zeroed before pooling.
            x = ConvBlock(f, (self.kernel_size,) * spatial, 1, self.batch_norm,
                          self.axis_name)(x, train)
            x = zero_padding(x)
            if self.pool > 1:
                x = nn.max_pool(x, window, strides=window, padding="SAME")
                mask = None if mask is None else pool_mask(mask, self.pool)
        return x, mask

    def _summarise(self, x: Array, axes: tuple[int, ...]) -> Array:
        """Collapse the spatial `axes` (trailing, before channels) into one feature vector."""
        if self.spatial_pool == "mean":
            return x.mean(axis=axes)
        return x.reshape(*x.shape[: axes[0]], -1)

    @nn.compact
    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """CNN features as a sequence, then the RNN's outputs and hidden states (one run)."""
        if inputs.ndim == 3:
            if self.return_sequences and self.pool != 1:
                raise ValueError("pool must be 1 with return_sequences (pooling shortens the "
                                 f"sequence), got pool={self.pool}")
            seq, mask = self._convs(inputs, train, mask)
        elif inputs.ndim == 4 and self.image_steps == "rows":
            # Rows become time steps: [B, H', W', F] -> [B, H', W'*F].
            x, mask = self._convs(inputs, train, mask)
            seq = self._summarise(x, (2,))
        elif inputs.ndim == 4:
            if mask is not None:
                raise ValueError("mask is not supported for image inputs [B, H, W, C]")
            x, _ = self._convs(inputs, train)
            # Columns become time steps: [B, H', W', F] -> [B, W', H', F] -> [B, W', H'*F].
            seq = self._summarise(jnp.swapaxes(x, 1, 2), (2,))
        elif inputs.ndim == 5:
            b, t = inputs.shape[:2]
            frames, _ = self._convs(inputs.reshape(b * t, *inputs.shape[2:]), train)
            seq = self._summarise(frames, (1, 2)).reshape(b, t, -1)
        else:
            raise ValueError(f"inputs must be [B,T,C], [B,H,W,C] or [B,T,H,W,C], "
                             f"got shape {inputs.shape}")
        rnn = RNN(self.make_cell(), return_sequences=self.return_sequences,
                  out_features=self.num_outputs, name="rnn", **self.scan_options())
        return rnn.outputs_and_states(seq, mask=mask, train=train, perturbations=perturbations)
