"""Transformer encoder baseline: attention instead of recurrence or convolution.

Each pre-LN block (Xiong et al. 2020) updates the residual stream x [B, T, D]:
    x = x + Dropout(MHSA(LayerNorm(x)))
    x = x + Dropout(W_2 GELU(W_1 LayerNorm(x)))
where multi-head self-attention, per head, is
    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V,   Q, K, V = x W_q, x W_k, x W_v
and the additive mask M is -inf for keys that are padding (mask False) and, when `causal`, for
keys after the query (so output t depends on inputs <= t only). Like a CNN, all positions are
computed at once; unlike a CNN, every position sees every other one in a single layer. Attention
is blind to order, so position encodings (learned, or fixed sinusoids) are added to the inputs.
Tokens are a per-step linear projection of the inputs by default (`embed_kernel=1`); a short
causal convolution (`embed_kernel=k`) can embed each step together with its k-1 predecessors.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_rnn.config_checks import check_choice, check_int, check_rate
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.readout import POOLS, pool_sequence
from cnn_rnn.models.registry import register_model
from cnn_rnn.models.rows import Dense
from cnn_rnn.models.tcn import CausalConv

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Return the fixed encodings [length, dim] of Vaswani et al.: sin/cos(pos / 10000^(2i/dim))."""
    pos = np.arange(length)[:, None]
    freq = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim), np.float32)
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)[:, : dim // 2]
    return table


def check_sizes(module: nn.Module, fields: tuple[str, ...]) -> None:
    """Check that each of `fields` is an integer >= 1 and that d_model divides by num_heads.

    For the Transformer encoder and the seq2seq Transformer, at construction (ConfigError).
    """
    for field in fields:
        check_int(f"model.{field}", getattr(module, field), 1)
    if module.d_model % module.num_heads:
        raise ConfigError("model.d_model", f"({module.d_model}) must be divisible by num_heads "
                          f"({module.num_heads})")


class BlockSizes(nn.Module):
    """The sizes of a stack of pre-LN blocks: declared and checked once, for two models.

    The Transformer encoder and the seq2seq Transformer inherit them.

    Keyword-only, so that a subclass's own fields (`num_outputs`, ...) stay first and positional;
    a subclass that changes a default redeclares the field as keyword-only.

    Attributes:
      d_model: width of the residual stream (divisible by num_heads).
      num_heads: attention heads.
      num_layers: blocks (per stack).
      mlp_dim: hidden width of each block's MLP.
      dropout: dropout rate.
      max_len: longest sequence allowed.

    """

    _: dataclasses.KW_ONLY
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 128
    dropout: float = 0.0
    max_len: int = 512

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "num_heads", "num_layers", "mlp_dim", "max_len"))
        super().__post_init__()


def residual_mlp(x: jax.Array, mlp_dim: int, drop: nn.Dropout) -> jax.Array:
    """The MLP sublayer of every pre-LN block: x + Dropout(W_2 Dropout(GELU(W_1 LayerNorm(x)))).

    Call it inside a block's compact method: its LayerNorm and Dense layers are the block's.
    """
    y = Dense(x.shape[-1])(drop(nn.gelu(Dense(mlp_dim)(nn.LayerNorm()(x)))))
    return x + drop(y)


class EncoderBlock(nn.Module):
    """One pre-LN encoder block: self-attention sublayer, then MLP sublayer, both residual.

    Attributes:
      num_heads: attention heads (d_model must divide by it).
      mlp_dim: hidden width of the MLP.
      dropout: dropout on attention weights and on each sublayer's output.

    """

    num_heads: int
    mlp_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, attn_mask: jax.Array | None, train: bool) -> jax.Array:
        """Apply the block to x [B, T, D]; attn_mask broadcasts to [B, 1, T, T], True = attend."""
        drop = nn.Dropout(self.dropout, deterministic=not train)
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(self.num_heads, dropout_rate=self.dropout)(
            y, mask=attn_mask, deterministic=not train)
        return residual_mlp(x + drop(y), self.mlp_dim, drop)


@register_model("transformer")
class Transformer(BlockSizes):
    """Transformer encoder for sequences [B, T, C]: project, add positions, blocks, readout.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      d_model: width of the residual stream.
      embed_kernel: each step's token is a causal 1-D convolution of the last `embed_kernel`
        input steps; 1 = a per-step linear projection (the plain baseline). A few steps give
        tokens local shape, which matters when each step is one scalar (MNIST-1D).
      num_heads: attention heads.
      num_layers: encoder blocks.
      mlp_dim: hidden width of each block's MLP.
      dropout: dropout rate (embeddings, attention weights, sublayer outputs).
      max_len: longest sequence for learned positions (their table is [max_len, d_model]).
      positions: "learned" or "sinusoidal".
      causal: mask attention to later steps (output t sees inputs <= t).
      pool: many-to-one readout: "mean" (mean over valid steps) or "last" (the last valid step;
        meant for causal=True, where that step has attended to the whole sequence before it,
        like an RNN's final state).
      return_sequences: many-to-many output [B, T, num_outputs] instead of [B, num_outputs].
      d_model, num_heads, num_layers, mlp_dim, dropout, max_len: keyword-only (`BlockSizes`).

    """

    num_outputs: int
    embed_kernel: int = 1
    positions: str = "learned"
    causal: bool = False
    pool: str = "mean"
    return_sequences: bool = False
    _: dataclasses.KW_ONLY  # dropout is one of the keyword-only BlockSizes
    dropout: float = 0.1

    def __post_init__(self) -> None:
        # Validate at construction, so build_model reports a bad value as a ConfigError.
        check_int("model.embed_kernel", self.embed_kernel, 1)
        check_choice("model.positions", self.positions, POSITIONS)
        check_choice("model.pool", self.pool, POOLS)
        check_rate("model.dropout", self.dropout)
        super().__post_init__()

    def attention_mask(self, mask: jax.Array | None, length: int) -> jax.Array | None:
        """Boolean [B or 1, 1, T, T] mask (True = may attend) from key padding and causality."""
        key_mask = None if mask is None else mask[:, None, None, :]
        causal = nn.make_causal_mask(jnp.ones((1, length))) if self.causal else None
        return nn.combine_masks(key_mask, causal, dtype=jnp.bool_)

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Map inputs [B, T, C] to [B, T, num_outputs] (return_sequences) or [B, num_outputs]."""
        length = inputs.shape[1]
        # Causal, so that neither causality nor right-padding invariance is lost.
        x = CausalConv(self.d_model, self.embed_kernel, name="embed")(inputs)
        if self.positions == "learned":
            if length > self.max_len:
                raise ValueError(f"sequence length {length} exceeds max_len {self.max_len} of "
                                 f"the learned positions; raise max_len or use sinusoidal")
            table = self.param("pos_embedding", nn.initializers.normal(0.02),
                               (self.max_len, self.d_model))
            x = x + table[:length]
        else:
            x = x + sinusoidal_positions(length, self.d_model)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        attn_mask = self.attention_mask(mask, length)
        for _ in range(self.num_layers):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout)(x, attn_mask, train)
        x = nn.LayerNorm(name="final_norm")(x)
        if not self.return_sequences:
            x = pool_sequence(x, mask, self.pool)
        return Dense(self.num_outputs, name="head")(x)
