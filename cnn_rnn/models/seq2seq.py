"""Encoder-decoders for sequence to sequence: recurrent (with or without attention), Transformer.

Recurrent (Sutskever et al. 2014; Cho et al. 2014): an encoder RNN reads the source x_1..x_S into
states h_1..h_S; the decoder RNN starts from the encoder's final state and emits one token per
step, reading the previous token y_{t-1} (and, with attention, a context c_t):

    s_t = cell(s_{t-1}, [E y_{t-1}, c_t]),     p(y_t) = softmax(W_o [s_t, c_t] + b_o)
    c_t = Σ_j α_tj h_j,  α_t = softmax_j(e_tj) over the real source steps, where
      additive (Bahdanau et al. 2015):  e_tj = vᵀ tanh(W_q s_{t-1} + W_k h_j)
      dot (Luong et al. 2015, "general"): e_tj = (W_q s_{t-1}) · h_j / sqrt(H)
Without attention c_t is absent: the final encoder state is the decoder's only view of the
source, a fixed-size bottleneck whatever the source length, which attention removes.

Transformer (Vaswani et al. 2017): the encoder blocks of `cnn_rnn.models.transformer` over the
source; decoder blocks with causal self-attention, cross-attention to the encoder output and an
MLP (pre-LN, like the encoder).

Training uses teacher forcing: the decoder reads the true previous tokens (`targets` shifted right
behind a start token, id `num_outputs`). Without `targets` the model decodes greedily, feeding back
its own argmax for `target_len` steps. Inputs are the source as vectors [B, S, D] (one-hot tokens)
with an optional mask [B, S] of real steps; outputs are logits [B, target_len, num_outputs].

The recurrent encoder takes `perturbations` (one [B, S, H] array) added to its states h_t, so the
gradient-flow probe measures ∂L/∂h_t at every encoder step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int
from cnn_rnn.models.registry import register_model
from cnn_rnn.models.rnn import CELLS, RNN
from cnn_rnn.models.rows import Dense
from cnn_rnn.models.transformer import (
    BlockSizes,
    EncoderBlock,
    residual_mlp,
    sinusoidal_positions,
)

Array = jax.Array
ATTENTIONS = ("none", "additive", "dot")
SEQ2SEQ_CELLS = ("gru", "lstm")


def check_lengths(source_len: int, target_len: int, max_len: int) -> None:
    """Raise ValueError if the source or the decoder is longer than `max_len` allows."""
    for what, n in (("source length", source_len), ("decoder length target_len", target_len)):
        if n > max_len:
            raise ValueError(f"{what} {n} exceeds max_len {max_len}; raise model.max_len")


def shift_right(targets: Array, start: int) -> Array:
    """Decoder inputs for teacher forcing: [start, y_1, ..., y_{T-1}] from targets [B, T]."""
    first = jnp.full((targets.shape[0], 1), start, targets.dtype)
    return jnp.concatenate([first, targets[:, :-1]], axis=1)


def attend(scores: Array, values: Array, mask: Array | None) -> Array:
    """Context Σ_j softmax(scores)_j values_j for scores [B, S], values [B, S, H]."""
    if mask is not None:
        scores = jnp.where(mask, scores, -1e9)
    return jnp.einsum("bs,bsh->bh", jax.nn.softmax(scores, axis=-1), values)


@register_model("seq2seq_rnn")
class RecurrentSeq2Seq(nn.Module):
    """GRU/LSTM encoder-decoder, without attention or with additive or dot-product attention.

    Attributes:
      num_outputs: target vocabulary size (set from the task); the start token is its id.
      target_len: decoder steps (set from the task).
      cell: "gru" or "lstm", for encoder and decoder (the project's cells).
      hidden: state size H of encoder and decoder.
      embed: size of the decoder's token embedding.
      attention: "none", "additive" (Bahdanau) or "dot" (Luong's general score).
      max_len: longest source and decoder allowed.

    """

    num_outputs: int
    target_len: int
    cell: str = "gru"
    hidden: int = 64
    embed: int = 32
    attention: str = "none"
    max_len: int = 512

    def __post_init__(self) -> None:
        check_choice("model.cell", self.cell, SEQ2SEQ_CELLS)
        check_choice("model.attention", self.attention, ATTENTIONS)
        for field in ("hidden", "embed", "max_len", "target_len"):
            check_int(f"model.{field}", getattr(self, field), 1)
        check_lengths(0, self.target_len, self.max_len)
        super().__post_init__()

    @nn.compact
    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None,
                           train: bool = False, targets: Array | None = None,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return the logits [B, target_len, V] and the encoder states [[B, S, H]].

        Args:
          inputs: source vectors [B, S, D].
          train: unused (no dropout); kept for the common model signature.
          mask: optional bool [B, S], True on real source steps.
          targets: int [B, target_len] for teacher forcing; None = greedy decoding.
          perturbations: optional [[B, S, H]] added to the encoder states (gradient probe).

        """
        check_lengths(inputs.shape[1], self.target_len, self.max_len)
        template = CELLS[self.cell](hidden=self.hidden, parent=None)
        final, states = RNN(template, name="encoder").outputs_and_states(
            inputs, mask=mask, perturbations=perturbations)
        return self._decode(states[-1], final, mask, targets), states

    @nn.nowrap
    def _decode(self, memory: Array, final: Array, mask: Array | None,
                targets: Array | None) -> Array:
        h, v = self.hidden, self.num_outputs
        cell = CELLS[self.cell](hidden=h, name="decoder")
        context = self.attention != "none"
        weights = cell.weights(self.embed + (h if context else 0))
        table = self.param("embedding", nn.initializers.normal(1.0), (v + 1, self.embed))
        w_o = self.param("W_o", nn.initializers.lecun_normal(), (h * (2 if context else 1), v))
        b_o = self.param("b_o", nn.initializers.zeros_init(), (v,))
        score = self._scorer(memory)

        def step(carry: tuple, token: Array) -> tuple[tuple, Array]:
            s = cell.hidden_of(carry)
            x = table[token]
            if context:
                c = attend(score(s), memory, mask)
                x = jnp.concatenate([x, c], axis=-1)
            carry = cell.step_input(weights, carry, x)
            out = cell.hidden_of(carry)
            if context:
                out = jnp.concatenate([out, c], axis=-1)
            return carry, out @ w_o + b_o

        carry0 = cell.with_hidden(cell.initialize_carry(None, final.shape, final.dtype), final)
        if targets is not None:
            tokens = jnp.swapaxes(shift_right(targets.astype(jnp.int32), v), 0, 1)
            _, logits = jax.lax.scan(step, carry0, tokens)
        else:
            def greedy(state: tuple, _: None) -> tuple[tuple, Array]:
                carry, token = state
                carry, logits = step(carry, token)
                return (carry, jnp.argmax(logits, -1).astype(jnp.int32)), logits

            start = jnp.full((final.shape[0],), v, jnp.int32)
            _, logits = jax.lax.scan(greedy, (carry0, start), None, length=self.target_len)
        return jnp.swapaxes(logits, 0, 1)

    @nn.nowrap
    def _scorer(self, memory: Array) -> Callable[[Array], Array] | None:
        """The attention score function s [B, H] -> e [B, S] (None without attention)."""
        h = self.hidden
        if self.attention == "additive":
            w_q = self.param("W_q", nn.initializers.lecun_normal(), (h, h))
            w_k = self.param("W_k", nn.initializers.lecun_normal(), (h, h))
            v = self.param("v", nn.initializers.lecun_normal(), (h, 1))
            keys = memory @ w_k  # once per source, not once per decoder step
            return lambda s: (jnp.tanh(keys + (s @ w_q)[:, None, :]) @ v)[..., 0]
        if self.attention == "dot":
            w_q = self.param("W_q", nn.initializers.lecun_normal(), (h, h))
            return lambda s: jnp.einsum("bh,bsh->bs", s @ w_q, memory) / jnp.sqrt(h)
        return None

    def __call__(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                 targets: Array | None = None,
                 perturbations: Sequence[Array] | None = None) -> Array:
        """Return logits [B, target_len, num_outputs]; see `outputs_and_states`."""
        return self.outputs_and_states(inputs, mask=mask, train=train, targets=targets,
                                       perturbations=perturbations)[0]


class DecoderBlock(nn.Module):
    """Pre-LN decoder block: causal self-attention, cross-attention to the encoder, MLP.

    Attributes:
      num_heads: attention heads.
      mlp_dim: hidden width of the MLP.
      dropout: dropout on attention weights and sublayer outputs.

    """

    num_heads: int
    mlp_dim: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, memory: Array, cross_mask: Array | None,
                 train: bool) -> Array:
        """Update x [B, T, D] reading memory [B, S, D]; cross_mask [B, 1, 1, S] or None."""
        drop = nn.Dropout(self.dropout, deterministic=not train)
        attn = functools.partial(nn.MultiHeadDotProductAttention, self.num_heads,
                                 dropout_rate=self.dropout, deterministic=not train)
        causal = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        x = x + drop(attn(name="self_attention")(nn.LayerNorm()(x), mask=causal))
        x = x + drop(attn(name="cross_attention")(nn.LayerNorm()(x), memory, mask=cross_mask))
        return residual_mlp(x, self.mlp_dim, drop)


class TransformerDecoder(nn.Module):
    """Token embedding + sinusoidal positions, decoder blocks, final norm and output head."""

    num_outputs: int
    d_model: int
    num_heads: int
    num_layers: int
    mlp_dim: int
    dropout: float

    @nn.compact
    def __call__(self, tokens: Array, memory: Array, cross_mask: Array | None,
                 train: bool) -> Array:
        """Logits [B, T, num_outputs] for decoder input tokens [B, T]."""
        x = nn.Embed(self.num_outputs + 1, self.d_model, name="embedding")(tokens)
        x = x + sinusoidal_positions(tokens.shape[1], self.d_model)
        for i in range(self.num_layers):
            x = DecoderBlock(self.num_heads, self.mlp_dim, self.dropout, name=f"block{i}")(
                x, memory, cross_mask, train)
        return Dense(self.num_outputs, name="head")(nn.LayerNorm(name="final_norm")(x))


def _greedy_step(decoder: TransformerDecoder, tokens: Array, t: Array, memory: Array,
                 cross_mask: Array | None) -> tuple[Array, Array]:
    """Decode position t from tokens [B, T+1] (start, then the tokens decoded so far)."""
    logits = decoder(tokens[:, :-1], memory, cross_mask, False)
    step_logits = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
    nxt = jnp.argmax(step_logits, -1).astype(tokens.dtype)
    return jax.lax.dynamic_update_index_in_dim(tokens, nxt, t + 1, axis=1), step_logits


@register_model("seq2seq_transformer")
class TransformerSeq2Seq(BlockSizes):
    """Transformer encoder-decoder (encoder blocks from `cnn_rnn.models.transformer`).

    Greedy decoding reruns the (causal) decoder on the tokens so far at each step, under
    `nn.scan`: one compiled step, O(T²) work, fine for the short targets of these tasks.

    Attributes:
      num_outputs: target vocabulary size (set from the task); the start token is its id.
      target_len: decoder steps (set from the task).
      d_model, num_heads, num_layers, mlp_dim, dropout, max_len: keyword-only, see
        `BlockSizes`; the decoder has as many layers as the encoder, max_len bounds the source
        and the decoder.

    """

    num_outputs: int
    target_len: int

    def __post_init__(self) -> None:
        check_int("model.target_len", self.target_len, 1)
        check_int("model.max_len", self.max_len, 1)  # before comparing with it
        check_lengths(0, self.target_len, self.max_len)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                 targets: Array | None = None) -> Array:
        """Return logits [B, target_len, num_outputs]; teacher forcing with `targets`."""
        check_lengths(inputs.shape[1], self.target_len, self.max_len)
        x = Dense(self.d_model, name="source_embedding")(inputs)
        x = x + sinusoidal_positions(inputs.shape[1], self.d_model)
        key_mask = None if mask is None else mask[:, None, None, :]
        for i in range(self.num_layers):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, name=f"encoder{i}")(
                x, key_mask, train)
        memory = nn.LayerNorm(name="encoder_norm")(x)
        decoder = TransformerDecoder(self.num_outputs, self.d_model, self.num_heads,
                                     self.num_layers, self.mlp_dim, self.dropout, name="decoder")
        if targets is not None:
            return decoder(shift_right(targets.astype(jnp.int32), self.num_outputs), memory,
                           key_mask, train)
        b = inputs.shape[0]
        tokens = jnp.full((b, self.target_len + 1), self.num_outputs, jnp.int32)
        if self.is_initializing():  # create the parameters once, outside the scan
            decoder(tokens[:, :-1], memory, key_mask, False)
        scan = nn.scan(_greedy_step, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=(0, nn.broadcast, nn.broadcast), length=self.target_len)
        _, logits = scan(decoder, tokens, jnp.arange(self.target_len), memory, key_mask)
        return jnp.swapaxes(logits, 0, 1)
