"""Linear recurrences (LRU, minGRU): h_t = a_t * h_{t-1} + b_t, computed in parallel over time.

A nonlinear RNN must step through time because h_t = f(h_{t-1}, x_t) cannot be composed ahead of
time. When the state update is LINEAR in h (elementwise a_t and b_t that depend only on the inputs),
two consecutive steps compose into one step of the same form:

    (a1, b1) then (a2, b2)  =  (a2 * a1,  a2 * b1 + b2)

This operator is associative, so `jax.lax.associative_scan` computes all T states in O(log T)
parallel depth, like a convolution computes all positions at once. The engines (associative,
chunked, and the sequential `jax.lax.scan` reference, all giving the same numbers) are in
`cnn_rnn.models.linear_scan` (`impl`, default "auto": sequential on CPU, associative elsewhere).

Models here stack residual blocks  x + Dropout(GLU(GELU(recurrence(LayerNorm(x))))); the
nonlinearity lives between recurrences, not inside them.

  LRU (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences"):
      lambda = exp(-exp(nu_log) + i exp(theta_log))       complex diagonal recurrence, |lambda| < 1
      h_t = lambda * h_{t-1} + exp(gamma_log) * (B x_t)    gamma normalises the state's variance
      y_t = Re(C h_t) + D * x_t
  minGRU (Feng et al. 2024, "Were RNNs All We Needed?"):
      z_t = sigmoid(W_z x_t + b_z),  h~_t = W_h x_t + b_h
      h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Masks: on padded steps a = 1 and b = 0, so the state is carried unchanged. Perturbation hook (for
the gradient-flow probe): p_t is added to b_t on valid steps, which is the same as adding p_t to h_t
right after step t; with p = 0 its gradient is dL/dh_t.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_number, check_rate
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.linear_scan import IMPLS, Coeffs, add, linear_scan
from cnn_rnn.models.readout import POOLS, pool_sequence
from cnn_rnn.models.registry import register_model
from cnn_rnn.models.rnn import StatesHook
from cnn_rnn.models.rows import Dense, matmul_rows

Array = jax.Array


def masked_coefficients(a: Coeffs, b: Coeffs, mask: Array | None,
                        perturbation: Coeffs | None) -> tuple[Coeffs, Coeffs]:
    """Apply the perturbation hook (b += p) and the mask (a = 1, b = 0 on padded steps)."""
    if perturbation is not None:
        b = add(b, perturbation)
    if mask is None:
        return a, b
    keep = mask[..., None].astype(bool)
    one = (1.0, 0.0) if isinstance(a, tuple) else 1.0
    a = jax.tree.map(lambda u, v: jnp.where(keep, u, v), a, one)
    return a, jax.tree.map(lambda u: jnp.where(keep, u, 0.0), b)


def _ring_nu_log(r_min: float, r_max: float) -> Callable[..., Array]:
    """Init of nu_log so that |lambda| = exp(-exp(nu_log)) is uniform on the ring [r_min, r_max]."""

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        u = jax.random.uniform(key, shape, dtype)
        return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))

    return init


class EigenvalueInit(nn.Module):
    """The LRU's eigenvalue init options, declared and checked once for `LRU` and `LRUModel`.

    Keyword-only, so that the subclasses' own fields stay first and positional.

    Attributes:
      r_min, r_max: ring of initial eigenvalue moduli |lambda|, 0 <= r_min < r_max <= 1 (close to
        1 = long memory).
      max_phase: initial eigenvalue phases are uniform in [0, max_phase], max_phase > 0 (theta is
        stored as its log, so a phase range of 0 would give -inf parameters).

    """

    _: dataclasses.KW_ONLY
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi

    def __post_init__(self) -> None:
        if check_number("model.r_max", self.r_max, strict=True) > 1.0:
            raise ConfigError("model.r_max", f"must be in (0, 1], got {self.r_max!r}")
        check_number("model.r_min", self.r_min, below=self.r_max)
        check_number("model.max_phase", self.max_phase, strict=True)
        super().__post_init__()


class LinearRecurrence(nn.Module):
    """Base of the recurrence layers `LRU` and `MinGRU`: their shared fields and checks.

    A subclass's `__call__(x [B, T, D], mask, perturbation)` returns (output y_t, state h_t).

    Attributes:
      hidden: state size.
      impl: the scan engine, one of linear_scan.IMPLS ("auto", "associative", "chunked",
        "sequential"); all give the same states.

    """

    hidden: int
    impl: str = "auto"

    def __post_init__(self) -> None:
        check_int("model.hidden", self.hidden, 1)
        check_choice("model.impl", self.impl, IMPLS)
        super().__post_init__()


def from_state(a: Coeffs, b: Coeffs, h0: Coeffs | None) -> Coeffs:
    """Return b with a_0 h0 added at step 0: a scan from zero then starts from the state h0.

    h_1 = a_1 h_0 + b_1; complex coefficients as (real, imag) pairs; a may be per step or [N].
    """
    if h0 is None:
        return b
    first = lambda u, like: jnp.broadcast_to(u, like.shape)[:, 0]  # noqa: E731
    if isinstance(b, tuple):
        ar, ai = first(a[0], b[0]), first(a[1], b[1])
        start = (ar * h0[0] - ai * h0[1], ar * h0[1] + ai * h0[0])
        return tuple(u.at[:, 0].add(v) for u, v in zip(b, start, strict=True))
    return b.at[:, 0].add(first(a, b) * h0)


class LRU(LinearRecurrence, EigenvalueInit):
    """Linear Recurrent Unit: a complex diagonal linear recurrence with input/output projections.

    Parameters (named as in the paper's code): nu_log, theta_log, gamma_log [N]; B_re, B_im [D, N];
    C_re, C_im [N, D]; D [D] (B and C stored transposed: B x_t is x_t @ B). The hidden state is
    complex64 [B, T, N].

    Attributes:
      hidden: state size N.
      impl: the scan engine, one of linear_scan.IMPLS ("auto", "associative", "chunked",
        "sequential"); all give the same states.
      r_min, r_max, max_phase: keyword-only, see `EigenvalueInit`.

    """

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, perturbation: Array | None = None,
                 h0: Coeffs | None = None) -> tuple[Array, Array]:
        """Return y [B, T, D] and the complex states h [B, T, N] for x [B, T, D].

        `h0` (a (real, imag) pair of [B, N]) is the state before the first step (zero if None).
        """
        n, d = self.hidden, x.shape[-1]
        nu_log = self.param("nu_log", _ring_nu_log(self.r_min, self.r_max), (n,))
        theta_log = self.param(
            "theta_log", lambda k, s: jnp.log(self.max_phase * jax.random.uniform(k, s)), (n,))
        # gamma = sqrt(1 - |lambda|^2) keeps E|h|^2 = E|Bx|^2 for white-noise inputs.
        gamma_log = self.param(
            "gamma_log", lambda k, s: jnp.log(jnp.sqrt(1.0 - jnp.exp(-2.0 * jnp.exp(nu_log)))),
            (n,))
        normal = nn.initializers.normal(1.0)
        # Stored input-major (x @ B, h @ C): the weight gradients then need no transpose of the
        # large [B*T, N] cotangents, which XLA:CPU does slowly for complex-derived arrays.
        b_re = self.param("B_re", normal, (d, n)) / math.sqrt(2 * d)
        b_im = self.param("B_im", normal, (d, n)) / math.sqrt(2 * d)
        c_re = self.param("C_re", normal, (n, d)) / math.sqrt(n)
        c_im = self.param("C_im", normal, (n, d)) / math.sqrt(n)
        d_skip = self.param("D", normal, (d,))

        # Complex numbers as (real, imag) pairs of float32 arrays.
        modulus = jnp.exp(-jnp.exp(nu_log))
        lam = (modulus * jnp.cos(jnp.exp(theta_log)), modulus * jnp.sin(jnp.exp(theta_log)))
        gamma = jnp.exp(gamma_log)
        bx = (matmul_rows(x, b_re) * gamma, matmul_rows(x, b_im) * gamma)
        if perturbation is not None:
            perturbation = (jnp.real(perturbation), jnp.imag(perturbation))
        a, b = masked_coefficients(lam, bx, mask, perturbation)
        h_re, h_im = linear_scan(a, from_state(a, b, h0), self.impl)
        y = matmul_rows(h_re, c_re) - matmul_rows(h_im, c_im) + d_skip * x
        h = jax.lax.complex(h_re, h_im)
        return y, h


class MinGRU(LinearRecurrence):
    """minGRU: a GRU whose gates see only x_t, so the recurrence is linear in h.

    Fused parameters W_x [D, 2H], b [2H], gate order (z, h~).

    Attributes:
      hidden: state size H.
      impl: the scan engine, one of linear_scan.IMPLS ("auto", "associative", "chunked",
        "sequential"); all give the same states.

    """

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, perturbation: Array | None = None,
                 h0: Array | None = None) -> tuple[Array, Array]:
        """Return (h, h), the states [B, T, H] (output and state coincide) for x [B, T, D].

        `h0` [B, H] is the state before the first step (zero if None).
        """
        w_x = self.param("W_x", nn.initializers.lecun_normal(), (x.shape[-1], 2 * self.hidden))
        bias = self.param("b", nn.initializers.zeros_init(), (2 * self.hidden,))
        z_pre, h_tilde = jnp.split(matmul_rows(x, w_x) + bias, 2, axis=-1)
        z = jax.nn.sigmoid(z_pre)
        a, b = masked_coefficients(1.0 - z, z * h_tilde, mask, perturbation)
        h = linear_scan(a, from_state(a, b, h0), self.impl)
        return h, h


class RecurrentBlock(nn.Module):
    """Residual block: x + Dropout(GLU(GELU(mixer(LayerNorm(x))))), GLU(u) = W1 u * sigmoid(W2 u).

    Attributes:
      mixer: constructor of the recurrence (LRU or MinGRU with its options bound).
      dropout: dropout rate on the block's output.

    """

    mixer: Callable[..., nn.Module]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, perturbation: Array | None,
                 train: bool, h0: Any = None) -> tuple[Array, Array]:
        """Return the block output [B, T, D] and the mixer's states [B, T, N] (from h0)."""
        y, h = self.mixer(name="recurrence")(nn.LayerNorm(name="norm")(x), mask, perturbation,
                                             h0)
        y = nn.gelu(y)
        gate = Dense(2 * x.shape[-1], name="glu")(y)
        y = gate[..., : x.shape[-1]] * jax.nn.sigmoid(gate[..., x.shape[-1]:])
        return x + nn.Dropout(self.dropout, deterministic=not train)(y), h


class LinearRecurrentModel(StatesHook):
    """Base of "lru" and "mingru": embedding, residual recurrent blocks, LayerNorm, output head.

    `__call__` and `hidden_states` come from `StatesHook` (the recurrent models' convention:
    `(inputs, *, mask, train, perturbations)`).

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      return_sequences: one output per step (set for many-to-many tasks).
      hidden: recurrent state size per block.
      d_model: width of the residual stream (None = hidden).
      num_layers: stacked residual blocks.
      dropout: dropout on each block's output.
      pool: many-to-one readout, "mean" over valid steps or "last" valid step.
      impl: the scan engine, one of linear_scan.IMPLS; same results.

    """

    num_outputs: int
    return_sequences: bool = False
    hidden: int = 64
    d_model: int | None = None
    num_layers: int = 2
    dropout: float = 0.0
    pool: str = "mean"
    impl: str = "auto"

    def __post_init__(self) -> None:
        check_int("model.hidden", self.hidden, 1)
        if self.d_model is not None:
            check_int("model.d_model", self.d_model, 1)
        check_int("model.num_layers", self.num_layers, 1)
        check_rate("model.dropout", self.dropout)
        check_choice("model.pool", self.pool, POOLS)
        check_choice("model.impl", self.impl, IMPLS)
        super().__post_init__()

    @nn.nowrap
    def make_mixer(self) -> Callable[..., nn.Module]:
        """Return the recurrence constructor with this model's options bound."""
        raise NotImplementedError

    def setup(self) -> None:
        """Create the embedding, the blocks, the final norm and the head."""
        self.embed = Dense(self.d_model or self.hidden)
        self.blocks = [RecurrentBlock(self.make_mixer(), self.dropout)
                       for _ in range(self.num_layers)]
        self.norm = nn.LayerNorm()
        self.head = Dense(self.num_outputs)

    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return the outputs [B, num_outputs] (or [B, T, num_outputs]) and each block's states.

        The states h_t are [B, T, hidden] (complex64 for the LRU). `perturbations` (one
        [B, T, hidden] array per block, of the states' dtype) are added to h_t right after step
        t on valid steps; with zeros, their gradient is dL/dh_t.
        """
        if perturbations is not None and len(perturbations) != self.num_layers:
            raise ValueError(f"perturbations: need one per layer ({self.num_layers}), "
                             f"got {len(perturbations)}")
        x = self.embed(inputs)
        states = []
        for i, block in enumerate(self.blocks):
            x, h = block(x, mask, None if perturbations is None else perturbations[i], train)
            states.append(h)
        x = self.norm(x)
        y = self.head(x if self.return_sequences else pool_sequence(x, mask, self.pool))
        return y, states

    # --- streaming (see cnn_rnn/models/streaming.py) -------------------------------------------
    # Everything but the recurrence is position-wise, so a step is the model on a one-step
    # sequence whose recurrences start from the carried states; a many-to-one readout carries
    # the pooled features so far (their sum and count for "mean", the last for "last").

    @nn.nowrap
    def init_carry(self, batch: int, features: int = 0, dtype: Any = jnp.float32) -> Any:
        """Zero states of every block, and the pooled readout so far (sum, count)."""
        del features
        zeros = jnp.zeros((batch, self.hidden), dtype)
        state = (zeros, zeros) if isinstance(self, LRUModel) else zeros
        pooled = (jnp.zeros((batch, self.d_model or self.hidden), dtype),
                  jnp.zeros((batch,), dtype))
        return tuple(state for _ in range(self.num_layers)), pooled

    def _advance(self, x_t: Array, mask_t: Array | None, states: Sequence[Any],
                 pooled: tuple[Array, Array]) -> tuple[Any, Array]:
        """One step from the carried states (applied through `step`)."""
        x = self.embed(x_t[:, None])
        m = None if mask_t is None else mask_t[:, None]
        new = []
        for block, h0 in zip(self.blocks, states, strict=True):
            x, h = block(x, m, None, False, h0)
            h = h[:, -1]
            new.append((jnp.real(h), jnp.imag(h)) if jnp.iscomplexobj(h) else h)
        x = self.norm(x)[:, 0]
        keep = (jnp.ones(x.shape[:1], x.dtype) if mask_t is None
                else mask_t.astype(x.dtype))
        total, count = pooled
        if self.pool == "mean":
            total, count = total + keep[:, None] * x, count + keep
            readout = total / jnp.maximum(count, 1.0)[:, None]
        else:
            total = jnp.where(keep[:, None] > 0, x, total)
            count, readout = count + keep, total
        y = self.head(x if self.return_sequences else readout)
        return (tuple(new), (total, count)), y

    @nn.nowrap
    def step(self, variables: Any, carry: Any, x_t: Array,
             mask_t: Array | None = None) -> tuple[Any, Array]:
        """One step x_t [B, D]: (new carry, y_t), y_t as the full pass computes it."""
        return self.apply(variables, x_t, mask_t, *carry, method=self._advance)


@register_model("lru")
class LRUModel(LinearRecurrentModel, EigenvalueInit):
    """Stack of LRU blocks (Orvieto et al. 2023); see `LRU` for the recurrence.

    Attributes:
      r_min, r_max, max_phase: the LRUs' eigenvalue init, see `EigenvalueInit`.

    """

    @nn.nowrap
    def make_mixer(self) -> Callable[..., nn.Module]:
        """Return an LRU constructor with this model's options."""
        return lambda name: LRU(self.hidden, self.impl, r_min=self.r_min, r_max=self.r_max,
                                max_phase=self.max_phase, name=name)


@register_model("mingru")
class MinGRUModel(LinearRecurrentModel):
    """Stack of minGRU blocks (Feng et al. 2024); see `MinGRU` for the recurrence."""

    @nn.nowrap
    def make_mixer(self) -> Callable[..., nn.Module]:
        """Return a MinGRU constructor with this model's options."""
        return lambda name: MinGRU(self.hidden, self.impl, name=name)
