"""Recurrent networks: Elman RNN, LSTM and GRU cells, and one scan-based layer that runs them all.

The same weights are applied at every step (weight sharing over time), so the parameter count does
not depend on the sequence length; unlike a convolution, step t needs the state of step t-1, so the
layer steps through time with `jax.lax.scan`. Training differentiates through that scan
(backpropagation through time).

Parameters are stored FUSED per cell: one input matrix W_x [D, G*H], one recurrent matrix
W_h [H, G*H] and one bias b [G*H], G = number of gates; column block k, i.e. [:, k*H:(k+1)*H],
belongs to gate k of the cell's documented gate order. The input projection W_x x_t + b has no
recurrence, so by default (`input_projection="hoisted"`) it is computed for all steps at once before
the scan: one big matmul instead of T small ones, which is what accelerators want. Each step then
only multiplies h_{t-1} by W_h and does elementwise work.

On CPU the trade-off reverses: the hoisted projection writes a [T, B, G*H] buffer (and its gradient
another) that the scan streams back through memory, while a per-step projection stays in cache.
Measured with XLA:CPU (B=64, T=200, D=32, H=128, forward+backward), "per_step" is 1.3-1.7x faster,
so `input_projection="auto"` picks "per_step" on the CPU backend and "hoisted" elsewhere.

The hoisted path and the GRU and Elman steps work per gate block ([B, H] arrays, [H, H]
matrices). The LSTM's per-step path (`LSTMCell.step_input`) instead computes all four gates as
ONE matmul [x_t, h_{t-1}] [W_x; W_h] and splits the result: fewer, larger operations, which on
an idle CPU made its training step 0.85x as long (the GRU gained nothing from fusing: its
candidate gate needs W_h h apart). The parameters are the same either way.

On CPU the Elman cell without mask or perturbation runs `elman_scan`, whose custom backward pass
computes the weight gradients as three large matmuls after the backward scan instead of
accumulating them step by step (0.9x the step time of the plain scan).

Batch groups (`batch_groups`): XLA:CPU runs independent operations of one scan step
concurrently on different cores, but a step of one [B, H] chain has little independent work, so on
a 2-core machine one core often waits. With batch_groups=k each step runs on k slices of the batch
as independent chains (`split_batch`): the same values, more concurrency. "auto" uses 2 for the GRU
on CPU when B >= 64 (B=64, T=200, D=32, H=128: 0.80x flax's step time against 0.88-0.92x
unsplit; B=256: 0.68x), and 1 otherwise: at B=16 it was 1.3x slower, and the LSTM, whose step is
one fused matmul, was 1.3x slower split.

Rematerialisation (`remat`): "step" recomputes each step's activations in the backward pass
(only the carries are stored); "segments" splits the T steps into segments of k (default
ceil(sqrt(T))) steps, stores only the carry at segment boundaries and recomputes one segment at a
time, so backpropagation through time needs O(T/k + k) stored steps instead of O(T), with the
same gradient (at T=10,000: 1/18 of the memory of the plain scan, in 0.9x its time on CPU).
"auto" (the default) is "step" for the gated cells on CPU and "none" otherwise: XLA:CPU streams
stored per-step activations back slowly, so recomputing them is faster (LSTM 0.85x, GRU 0.8x
the step time at B=64, T=200, D=32, H=128 and at T=64..1000; at MNIST-1D's B=128, T=40, D=1
the same for the LSTM and 1.07x for the GRU; saving only the matmul outputs with a checkpoint
policy was in between). For the Elman cell it makes no difference. `unroll` effects on CPU
were inconsistent across shapes except for the LSTM model, whose default is unroll=2.

`impl="cudnn"` runs an LSTM layer through cuDNN (`jax.experimental.rnn`) on a CUDA GPU, with the
same parameters as the scan path (converted to cuDNN's packed layout inside the step, see
`cnn_rnn.models.cudnn`); on other backends it raises a ValueError instead of silently running
something else. `dtype` sets the computation dtype (e.g. "bfloat16" on GPU/TPU); parameters stay
float32 and the outputs are cast back to the input dtype.

Hidden-state hook: `RNN.hidden_states` returns every layer's states h_t, and an optional
`perturbations` argument adds an array p_t to h_t right after each step, before h_t feeds step t+1
and the layer above. With p = 0 the output is unchanged and grad(loss)(p)[t] = dL/dh_t, which is
what the gradient-flow probe measures.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.models import cudnn
from cnn_rnn.models.registry import register_model
from cnn_rnn.registry import check_choice

Array = jax.Array
Carry = Any  # h [B, H] for Elman and GRU; (c, h) for LSTM.
Gates = tuple[Array, ...]  # one [..., H] array per gate, in the cell's gate order
Weights = dict[str, Any]  # what a step reads: "W_h" (tuple of [H, H] gate blocks), extra biases
Initializer = Callable[..., Array]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu}
RECURRENT_INITS = ("default", "orthogonal", "identity")
INPUT_PROJECTIONS = ("auto", "hoisted", "per_step")
REMATS = ("auto", "none", "step", "segments")  # also accepted: True (= "step"), False (= "none")
IMPLS = ("scan", "cudnn")
DTYPES = (None, "float32", "bfloat16", "float16")


def check_positive(field: str, value: int) -> None:
    """Raise ValueError unless `value` is an int >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}")


def check_rate(field: str, value: float) -> None:
    """Raise ValueError unless `value` is a number with 0 <= value < 1 (dropout rates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{field} must be a number in [0, 1), got {value!r}")


def gate_blocks(w: Array, num_gates: int) -> Gates:
    """Split a fused [..., G*H] array into its G gate blocks [..., H]."""
    return tuple(jnp.split(w, num_gates, axis=-1))


def recurrent_initializer(kind: str, num_gates: int, scale: float = 1.0) -> Initializer:
    """Return an initializer for a fused W_h [H, G*H] that fills each gate's [H, H] block apart.

    kind: "default" (lecun normal, variance 1/H), "orthogonal" (Saxe et al. 2014; keeps the norm of
    h through the linear part of a step) or "identity" (scale * I, the IRNN of Le et al. 2015: with
    ReLU the state is copied forward and gradients neither vanish nor explode at initialisation).
    """
    check_choice("recurrent_init", kind, RECURRENT_INITS)
    if kind == "identity":
        block = lambda key, shape, dtype: scale * jnp.eye(shape[0], shape[1], dtype=dtype)  # noqa: E731
    elif kind == "orthogonal":
        block = nn.initializers.orthogonal(scale)
    else:
        block = nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")

    def init(key: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
        h = shape[1] // num_gates
        keys = jax.random.split(key, num_gates)
        return jnp.concatenate([block(k, (shape[0], h), dtype) for k in keys], axis=1)

    return init


class RecurrentCell(nn.Module):
    """Base class: fused parameters, the hoisted input projection and a pure step function.

    Subclasses set `num_gates` and implement `update` (additive cells, whose pre-activations are
    W_x x + b + W_h h) or override `step` and set `additive = False`. `weights = cell(D)` creates
    (at init) or reads the parameters; then `project(weights, x)` is the input projection
    W_x x + b (one [..., H] array per gate), `step(weights, carry, xp_t)` one time step from the
    projected input and `step_input(weights, carry, x_t)` one from the raw input, all pure.

    Attributes:
      hidden: size H of the hidden state.
      recurrent_init: init of W_h, one of RECURRENT_INITS.
      identity_scale: scale of the "identity" (and "orthogonal") recurrent init.

    """

    hidden: int
    recurrent_init: str = "orthogonal"
    identity_scale: float = 1.0

    num_gates: ClassVar[int] = 1
    extra_biases: ClassVar[tuple[str, ...]] = ()  # [H] biases used inside the step (GRU's b_hn)
    additive: ClassVar[bool] = True  # pre-activations are W_x x + b + W_h h (see `step`)
    fused_input_step: ClassVar[bool] = False  # step_input as one [x, h] matmul (additive only)
    cpu_batch_groups: ClassVar[int] = 1  # batch_groups="auto" on CPU (see resolve_batch_groups)

    def __post_init__(self) -> None:
        check_positive("hidden", self.hidden)
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        super().__post_init__()

    @nn.nowrap
    def bias_init(self) -> Initializer:
        """Return the initializer of the fused bias b [G*H] (zeros unless overridden)."""
        return nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, in_features: int) -> Weights:
        """Create (at init) or read the fused parameters; return them split into gate blocks.

        The returned dict holds "W_x", "b" and "W_h" as tuples of G blocks ([D, H], [H], [H, H])
        plus any `extra_biases`, and the fused "W_xh" = [W_x; W_h] [D+H, G*H] and "b_all" [G*H]
        for cells whose `step_input` uses them (unused arrays cost nothing under jit).
        `project`, `step` and `step_input` read only this dict, so they are pure.
        """
        g, h = self.num_gates, self.hidden
        w_x = self.param("W_x", nn.initializers.lecun_normal(), (in_features, g * h))
        w_h = self.param("W_h", recurrent_initializer(self.recurrent_init, g, self.identity_scale),
                         (h, g * h))
        b = self.param("b", self.bias_init(), (g * h,))
        weights: Weights = {"W_x": gate_blocks(w_x, g), "b": gate_blocks(b, g),
                            "W_h": gate_blocks(w_h, g),
                            "W_xh": jnp.concatenate([w_x, w_h], axis=0), "b_all": b}
        for name in self.extra_biases:
            weights[name] = self.param(name, nn.initializers.zeros_init(), (h,))
        return weights

    @staticmethod
    def project(weights: Weights, x: Array) -> Gates:
        """Input projection W_x x + b for x [..., D], one [..., H] array per gate."""
        return tuple(x @ w + b for w, b in zip(weights["W_x"], weights["b"], strict=True))

    @nn.nowrap
    def update(self, carry: Carry, pre: Gates) -> Carry:
        """The new carry from the old one and the gates' pre-activations (additive cells)."""
        raise NotImplementedError

    @nn.nowrap
    def step(self, weights: Weights, carry: Carry, xp: Gates) -> Carry:
        """One time step: the new carry from the old one and the projected inputs xp_t.

        For additive cells the pre-activation of gate k is xp_t^k + h_{t-1} W_h^k.
        """
        h = self.hidden_of(carry)
        return self.update(carry, tuple(x + h @ w
                                        for x, w in zip(xp, weights["W_h"], strict=True)))

    @nn.nowrap
    def step_input(self, weights: Weights, carry: Carry, x: Array) -> Carry:
        """One time step from the raw input x_t [B, D] (the per-step projection).

        With `fused_input_step` (the LSTM) all pre-activations are ONE matmul,
        [x_t, h_{t-1}] [W_x; W_h] + b, then split: on CPU 0.85x the training-step time of the 8
        per-gate matmuls at B=64, T=200, D=32, H=128 and at MNIST-1D's B=128, T=40, D=1. For the
        Elman cell it made no difference, and the GRU's candidate needs W_h h apart from W_x x
        (a zero-padded fused matmul measured slower).
        """
        if not (self.additive and self.fused_input_step):
            return self.step(weights, carry, self.project(weights, x))
        h = self.hidden_of(carry)
        pre = jnp.concatenate([x, h], axis=-1) @ weights["W_xh"] + weights["b_all"]
        return self.update(carry, gate_blocks(pre, self.num_gates))

    @nn.nowrap
    def initial_carry(self, batch_size: int, dtype: Any = jnp.float32) -> Carry:
        """Return the zero state h_0 (Elman, GRU)."""
        return jnp.zeros((batch_size, self.hidden), dtype)

    @staticmethod
    def hidden_of(carry: Carry) -> Array:
        """Return the hidden state h [B, H] inside a carry."""
        return carry

    @staticmethod
    def with_hidden(carry: Carry, h: Array) -> Carry:
        """Return the carry with its hidden state replaced by h."""
        return h


class ElmanCell(RecurrentCell):
    """Elman RNN cell:  h_t = f(W_h h_{t-1} + W_x x_t + b),  f = tanh or relu.

    In the usual notation W_h = W_hh, W_x = W_xh, b = b_h. One gate: W_x [D, H], W_h [H, H], b [H].

    Attributes:
      activation: "tanh" or "relu".
      recurrent_init: "default", "orthogonal" or "identity" (IRNN with relu).

    """

    activation: str = "tanh"
    recurrent_init: str = "default"

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        super().__post_init__()

    @nn.nowrap
    def update(self, carry: Carry, pre: Gates) -> Carry:
        """h_t = f(pre_t), pre_t = W_x x_t + b + W_h h_{t-1}."""
        return ACTIVATIONS[self.activation](pre[0])


class LSTMCell(RecurrentCell):
    """LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate, Gers et al. 2000).

        i_t = sigmoid(W_x^i x_t + W_h^i h_{t-1} + b^i)     input gate
        f_t = sigmoid(W_x^f x_t + W_h^f h_{t-1} + b^f)     forget gate
        g_t = tanh   (W_x^g x_t + W_h^g h_{t-1} + b^g)     candidate
        o_t = sigmoid(W_x^o x_t + W_h^o h_{t-1} + b^o)     output gate
        c_t = f_t * c_{t-1} + i_t * g_t                    cell state
        h_t = o_t * tanh(c_t)

    Gate order in the fused W_x [D, 4H], W_h [H, 4H], b [4H]: (i, f, g, o), as in flax's LSTMCell.
    The carry is (c, h). The forget-gate bias b^f starts at `forget_bias` (1.0: remember by default,
    Jozefowicz et al. 2015), so that gradients flow through c_t early in training.
    """

    forget_bias: float = 1.0
    num_gates: ClassVar[int] = 4
    fused_input_step: ClassVar[bool] = True

    @nn.nowrap
    def bias_init(self) -> Initializer:
        """Return zeros except the forget-gate slice [H:2H], which is `forget_bias`."""
        h, fb = self.hidden, self.forget_bias
        return lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[h:2 * h].set(fb)

    @nn.nowrap
    def update(self, carry: Carry, pre: Gates) -> Carry:
        """(c_t, h_t) from (c_{t-1}, h_{t-1}) and the pre-activations of (i, f, g, o)."""
        c = carry[0]
        i, f, g, o = pre
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)

    @nn.nowrap
    def initial_carry(self, batch_size: int, dtype: Any = jnp.float32) -> Carry:
        """Return zero cell and hidden states (c_0, h_0)."""
        zeros = jnp.zeros((batch_size, self.hidden), dtype)
        return zeros, zeros

    @staticmethod
    def hidden_of(carry: Carry) -> Array:
        """Return h from (c, h)."""
        return carry[1]

    @staticmethod
    def with_hidden(carry: Carry, h: Array) -> Carry:
        """Return (c, h) with h replaced."""
        return carry[0], h


class GRUCell(RecurrentCell):
    """GRU cell (Cho et al. 2014), in the gate convention of flax's nn.GRUCell and PyTorch.

        r_t = sigmoid(W_x^r x_t + b^r + W_h^r h_{t-1})                  reset gate
        z_t = sigmoid(W_x^z x_t + b^z + W_h^z h_{t-1})                  update gate
        n_t = tanh(W_x^n x_t + b^n + r_t * (W_h^n h_{t-1} + b_hn))      candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Gate order in the fused W_x [D, 3H], W_h [H, 3H], b [3H]: (r, z, n). b_hn [H] is separate
    because the reset gate multiplies it.
    """

    num_gates: ClassVar[int] = 3
    extra_biases: ClassVar[tuple[str, ...]] = ("b_hn",)
    # Two half-batch chains: 0.80-0.87x the CPU step time of one at B=64..256 (worse at B=16).
    # The LSTM's single fused [x, h] matmul per step measured 1.3x slower split.
    cpu_batch_groups: ClassVar[int] = 2
    additive: ClassVar[bool] = False  # the reset gate multiplies W_h^n h + b_hn

    @nn.nowrap
    def step(self, weights: Weights, carry: Carry, xp: Gates) -> Carry:
        """h_t from h_{t-1} and xp_t = W_x x_t + b."""
        xr, xz, xn = xp
        w_hr, w_hz, w_hn = weights["W_h"]
        r = jax.nn.sigmoid(xr + carry @ w_hr)
        z = jax.nn.sigmoid(xz + carry @ w_hz)
        n = jnp.tanh(xn + r * (carry @ w_hn + weights["b_hn"]))
        return (1.0 - z) * n + z * carry


CELLS: dict[str, Callable[..., RecurrentCell]] = {
    "rnn": ElmanCell,
    "irnn": functools.partial(ElmanCell, activation="relu", recurrent_init="identity"),
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def run_cell(cell: RecurrentCell, weights: Weights, xs: Gates | Array,
             mask: Array | None = None, perturbation: Array | None = None, *,
             projected: bool = True, unroll: int = 1, remat: bool | str = "none",
             segment: int | None = None, batch_groups: int = 1) -> tuple[Carry, Array]:
    """Run `cell` over a time-major sequence with `jax.lax.scan` (the loop of every cell).

    Args:
      cell: a bound cell (its `project` and `step` are pure).
      weights: what `cell(D)` returned.
      xs: the projected inputs W_x x_t + b, per gate, [T, B, H] each (projected=True), or the raw
        inputs [T, B, D], projected inside each step (projected=False).
      mask: bool [T, B]; on False steps the carry is kept unchanged and the output is zero.
      perturbation: [T, B, H] added to h_t after each (valid) step, before it feeds step t+1.
      projected: whether `xs` is already projected.
      unroll: steps per scan iteration (passed to `jax.lax.scan`).
      remat: "none", "step" (recompute each step in the backward pass) or "segments" (store
        only the carry every `segment` steps and recompute one segment at a time); True/False
        mean "step"/"none". Not "auto": resolve it first with `resolve_remat`.
      segment: steps per segment for remat="segments"; None = ceil(sqrt(T)).
      batch_groups: run each step on this many slices of the batch (see `split_batch`).

    Returns:
      The final carry (= the state after the last valid step) and the states h [T, B, H].

    """
    remat = {True: "step", False: "none"}.get(remat, remat)
    check_choice("remat", remat, REMATS[1:])

    def body(carry: Carry, inp: tuple[Any, Array | None, Array | None]) -> tuple[Carry, Array]:
        x_t, m_t, p_t = inp
        new = (cell.step(weights, carry, x_t) if projected
               else cell.step_input(weights, carry, x_t))
        if p_t is not None:
            new = cell.with_hidden(new, cell.hidden_of(new) + p_t)
        if m_t is None:
            return new, cell.hidden_of(new)
        keep = m_t[:, None]
        new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
        return new, jnp.where(keep, cell.hidden_of(new), 0.0)

    if batch_groups > 1:
        body = split_batch(body, batch_groups)
    if (isinstance(cell, ElmanCell) and not projected and mask is None and perturbation is None
            and remat == "none" and unroll == 1 and batch_groups == 1):
        hs = elman_scan(cell.activation, weights["W_x"][0], weights["b"][0], weights["W_h"][0],
                        xs)
        return hs[-1], hs
    if remat == "step":
        body = jax.checkpoint(body, prevent_cse=False)
    first = jax.tree.leaves(xs)[0]
    carry0 = cell.initial_carry(first.shape[1], first.dtype)
    inputs = (xs, mask, perturbation)
    if remat == "segments":
        return scan_in_segments(body, carry0, inputs, segment, unroll)
    return jax.lax.scan(body, carry0, inputs, unroll=unroll)


def split_batch(body: Callable[[Carry, Any], tuple[Carry, Array]],
                groups: int) -> Callable[[Carry, Any], tuple[Carry, Array]]:
    """Return a scan body that runs `body` on `groups` slices of the batch and concatenates.

    The slices are independent, so their small matmuls and elementwise ops form separate chains
    that XLA:CPU's executor runs concurrently on different cores, where one [B, H] chain keeps
    one core waiting on the other. The values are those of `body` on the whole batch (slices of
    sizes differing by at most one when B is not divisible). Every leaf of the carry and of the
    step's inputs has the batch on its leading axis.
    """
    def grouped(carry: Carry, inp: Any) -> tuple[Carry, Array]:
        b = jax.tree.leaves(carry)[0].shape[0]
        if b < groups:
            return body(carry, inp)
        bounds = [b * g // groups for g in range(groups + 1)]
        outs = [body(*jax.tree.map(lambda a, lo=lo, hi=hi: a[lo:hi], (carry, inp)))
                for lo, hi in itertools.pairwise(bounds)]
        return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=0), *outs)

    return grouped


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def elman_scan(activation: str, w_x: Array, b: Array, w_h: Array, xs: Array) -> Array:
    """All states of h_t = f(x_t W_x + b + h_{t-1} W_h), h_0 = 0, for time-major xs [T, B, D].

    The same values and gradients as scanning ElmanCell.step_input; the custom backward pass
    only carries dL/dh back through time (one [B, H] x [H, H] matmul per step) and computes the
    weight gradients afterwards as three large matmuls over all T*B rows, instead of
    accumulating them step by step. The Elman step is so small that the per-step operations
    dominate its cost: on CPU this is 0.85x the training-step time of the plain scan at B=64,
    T=200, D=32, H=128 on an idle machine. Used by `run_cell` when nothing else (mask,
    perturbation, remat, unroll) is asked for.
    """
    return _elman_states(activation, w_x, b, w_h, xs)


def _elman_states(activation: str, w_x: Array, b: Array, w_h: Array, xs: Array) -> Array:
    f = ACTIVATIONS[activation]

    def body(h: Array, x_t: Array) -> tuple[Array, Array]:
        h = f(x_t @ w_x + b + h @ w_h)
        return h, h

    return jax.lax.scan(body, jnp.zeros((xs.shape[1], w_h.shape[0]), xs.dtype), xs)[1]


def _elman_fwd(activation: str, w_x: Array, b: Array, w_h: Array,
               xs: Array) -> tuple[Array, tuple[Array, ...]]:
    hs = _elman_states(activation, w_x, b, w_h, xs)
    return hs, (w_x, w_h, xs, hs)


def _elman_bwd(activation: str, residuals: tuple[Array, ...],
               d_hs: Array) -> tuple[Array, Array, Array, Array]:
    w_x, w_h, xs, hs = residuals
    # f'(pre) from f(pre) = h: 1 - h^2 for tanh, [h > 0] for relu.
    slope = (lambda h: 1.0 - h * h) if activation == "tanh" else (lambda h: (h > 0).astype(h.dtype))

    def body(d_h: Array, inp: tuple[Array, Array]) -> tuple[Array, Array]:
        h_t, d_out = inp
        d_pre = (d_h + d_out) * slope(h_t)
        return d_pre @ w_h.T, d_pre

    _, d_pre = jax.lax.scan(body, jnp.zeros_like(hs[0]), (hs, d_hs), reverse=True)
    rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    # Step t reads h_{t-1}; h_{-1} = 0 contributes nothing to dW_h.
    d_w_h = rows(hs[:-1]).T @ rows(d_pre[1:])
    return rows(xs).T @ rows(d_pre), rows(d_pre).sum(axis=0), d_w_h, d_pre @ w_x.T


elman_scan.defvjp(_elman_fwd, _elman_bwd)


def scan_in_segments(body: Callable[[Carry, Any], tuple[Carry, Array]], carry0: Carry,
                     inputs: Any, segment: int | None = None,
                     unroll: int = 1) -> tuple[Carry, Array]:
    """`jax.lax.scan(body, carry0, inputs)`, checkpointed every `segment` steps.

    A nested scan: the outer one steps over segments of `segment` steps (default ceil(sqrt(T)))
    and its body, the inner scan over one segment, is wrapped in `jax.checkpoint`. The backward
    pass therefore keeps only the carries at segment boundaries and recomputes one segment at a
    time: O(T/k + k) stored steps instead of O(T), for one extra forward pass. Results and
    gradients are those of the plain scan. A last partial segment is scanned on its own.
    """
    t = jax.tree.leaves(inputs)[0].shape[0]
    if segment is not None:
        check_positive("remat_segment", segment)
    k = min(segment or math.isqrt(max(t, 1) - 1) + 1, max(t, 1))  # default ceil(sqrt(T))
    n, head = t // k, (t // k) * k

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def run_segment(carry: Carry, seg: Any) -> tuple[Carry, Array]:
        return jax.lax.scan(body, carry, seg, unroll=unroll)

    segments = jax.tree.map(lambda a: a[:head].reshape(n, k, *a.shape[1:]), inputs)
    carry, hs = jax.lax.scan(run_segment, carry0, segments)
    hs = hs.reshape(head, *hs.shape[2:])
    if head < t:
        carry, tail = run_segment(carry, jax.tree.map(lambda a: a[head:], inputs))
        hs = jnp.concatenate([hs, tail], axis=0)
    return carry, hs


def resolve_remat(remat: bool | str, num_gates: int) -> str:
    """Return "none", "step" or "segments" for `remat` (see REMATS) and a cell with num_gates.

    "auto" is "step" for gated cells (LSTM, GRU) on the CPU backend, where recomputing a step is
    cheaper than streaming its stored activations back (measured: 0.65-0.8x the step time at
    B=64, T=200, H=128, no change at MNIST-1D size), and "none" elsewhere.
    """
    remat = {True: "step", False: "none"}.get(remat, remat)
    check_choice("remat", remat, REMATS)
    if remat == "auto":
        return "step" if num_gates > 1 and jax.default_backend() == "cpu" else "none"
    return remat


MIN_GROUP_BATCH = 32  # below this many sequences per group, splitting measured slower


def resolve_batch_groups(groups: int | str, cell: RecurrentCell, batch: int) -> int:
    """Return the batch groups for `groups` ("auto" or an int), `cell` and a batch size.

    "auto" is the cell's `cpu_batch_groups` (2 for the GRU) on the CPU backend when every group
    keeps at least MIN_GROUP_BATCH sequences, and 1 otherwise: on an accelerator one large
    matmul beats two half-size ones.
    """
    if groups != "auto":
        return groups
    k = cell.cpu_batch_groups
    return k if jax.default_backend() == "cpu" and batch >= k * MIN_GROUP_BATCH else 1


def resolve_input_projection(mode: str) -> str:
    """Return "hoisted" or "per_step" for mode (one of INPUT_PROJECTIONS) on the default backend."""
    check_choice("input_projection", mode, INPUT_PROJECTIONS)
    if mode == "auto":
        return "per_step" if jax.default_backend() == "cpu" else "hoisted"
    return mode


def reverse_valid(x: Array, lengths: Array | None) -> Array:
    """Reverse each sequence of time-major x [T, B, ...] within its own valid length.

    Step t < L_b goes to L_b - 1 - t; padded steps stay where they are, so a backward pass over the
    result starts at each sequence's real last step. Its own inverse. Assumes right padding (valid
    steps first). With lengths None the whole time axis is flipped.
    """
    if lengths is None:
        return jnp.flip(x, axis=0)
    t = jnp.arange(x.shape[0])[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=0)


def check_layer_options(remat: bool | str, remat_segment: int | None, impl: str,
                        dtype: str | None) -> None:
    """Validate the speed/memory options of `ScanOptions`.

    impl="cudnn" is checked against the backend here, at construction, so that a config asking
    for it on a machine without cuDNN fails at once with one clear line.
    """
    if not isinstance(remat, bool):
        check_choice("remat", remat, REMATS)
    if remat_segment is not None:
        check_positive("remat_segment", remat_segment)
    check_choice("impl", impl, IMPLS)
    check_choice("dtype", dtype, DTYPES)
    if impl == "cudnn":
        if dtype not in (None, "float32"):
            raise ValueError(f"impl='cudnn' computes in float32 only, got dtype={dtype!r}")
        cudnn.require_cudnn()


class ScanOptions(nn.Module):
    """The options of a scan-based recurrent stack, declared once for every module that has them.

    The `RNN` layer reads them; the recurrent models and the CNN+RNN hybrid inherit them and pass
    them on with `scan_options()`. They are keyword-only, so that a subclass's own fields (the
    layer's `cell`, a model's `num_outputs`) stay first and positional; a subclass that changes a
    default redeclares the field after its own `_: dataclasses.KW_ONLY`.

    Attributes:
      num_layers: stacked layers; layer l reads the state sequence of layer l-1.
      bidirectional: also run each layer backwards (each sequence reversed within its valid
        length) and concatenate the two state sequences, [.., 2H].
      dropout: dropout rate on the state sequence between stacked layers.
      unroll: steps per scan iteration (speed/compile-time trade-off).
      remat: backward-pass rematerialisation, one of REMATS or a bool (see the module
        docstring): "none", "step", "segments" or "auto" ("step" for gated cells on CPU).
      remat_segment: steps per segment for remat="segments" (None = ceil(sqrt(T))).
      input_projection: "hoisted" (W_x x for all steps before the scan), "per_step" (inside the
        scan) or "auto" (per_step on CPU, hoisted on GPU/TPU); the results are the same.
      impl: "scan" (our cells under `jax.lax.scan`) or "cudnn" (LSTM cells only, CUDA GPUs;
        same parameters; unroll/remat/input_projection do not apply; calls with perturbations
        run the scan path, since cuDNN cannot inject them between steps).
      dtype: computation dtype (None = the inputs'), e.g. "bfloat16" on GPU/TPU; parameters
        stay float32 and states/outputs are returned in the inputs' dtype.
      batch_groups: run each step on this many slices of the batch (`split_batch`), or "auto"
        (2 for the GRU on CPU at B >= 64, else 1); the results are the same.

    """

    _: dataclasses.KW_ONLY
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    unroll: int = 1
    remat: bool | str = "auto"
    remat_segment: int | None = None
    input_projection: str = "auto"
    impl: str = "scan"
    dtype: str | None = None
    batch_groups: int | str = "auto"

    def __post_init__(self) -> None:
        if self.batch_groups != "auto" and not (isinstance(self.batch_groups, int)
                                                and not isinstance(self.batch_groups, bool)
                                                and self.batch_groups >= 1):
            raise ValueError(f"batch_groups must be 'auto' or an integer >= 1, "
                             f"got {self.batch_groups!r}")
        check_positive("num_layers", self.num_layers)
        check_positive("unroll", self.unroll)
        check_rate("dropout", self.dropout)
        check_choice("input_projection", self.input_projection, INPUT_PROJECTIONS)
        check_layer_options(self.remat, self.remat_segment, self.impl, self.dtype)
        super().__post_init__()

    @nn.nowrap
    def scan_options(self) -> dict[str, Any]:
        """Return these options as keyword arguments of `RNN`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ScanOptions)
                if f.name not in ("parent", "name")}


class RNN(ScanOptions):
    """A (stacked, optionally bidirectional) recurrent layer: any cell scanned over time.

        h_t^l = cell^l(h_{t-1}^l, h_t^{l-1}),  h_t^0 = x_t;   y_t = W_hy h_t^L + b_y

    Attributes:
      cell: a RecurrentCell class or functools.partial of one (e.g. CELLS["gru"] with hidden=...
        given via `functools.partial`); called once per layer and direction, each with its own
        parameters named `layer{l}_fwd` / `layer{l}_bwd`.
      return_sequences: output y_t at every step [B, T, F] (many-to-many) instead of one output per
        sequence [B, F] read from the last valid step (many-to-one; for the backward direction, the
        state after reading the whole sequence backwards, i.e. at step 0).
      out_features: size F of the output projection y = W_hy h + b_y; None = no projection.
      num_layers, bidirectional, dropout, unroll, remat, remat_segment, input_projection, impl,
        dtype: keyword-only, see `ScanOptions`.

    """

    cell: Callable[..., RecurrentCell]
    return_sequences: bool = False
    out_features: int | None = None

    @nn.compact
    def _run(self, inputs: Array, mask: Array | None, perturbations: Sequence[Array] | None,
             train: bool) -> tuple[list[Array], Array, Callable[[Array], Array]]:
        """Run the stack; return per-layer states, the final summary and the output projection.

        The states are time-major [T, B, H*dirs]; the summary [B, H*dirs] is each direction's state
        after its last valid step; the projection is the identity without `out_features`.
        """
        if perturbations is not None and len(perturbations) != self.num_layers:
            raise ValueError(f"perturbations: need one per layer ({self.num_layers}), "
                             f"got {len(perturbations)}")
        # Time-major once for the whole stack: scan slices the leading axis.
        dtype = inputs.dtype if self.dtype is None else jnp.dtype(self.dtype)
        x = jnp.swapaxes(inputs, 0, 1).astype(dtype)
        m = None if mask is None else jnp.swapaxes(mask.astype(bool), 0, 1)
        lengths = None if m is None else m.sum(axis=0)
        directions = ("fwd", "bwd") if self.bidirectional else ("fwd",)
        hoisted = resolve_input_projection(self.input_projection) == "hoisted"
        use_cudnn = self.impl == "cudnn" and perturbations is None
        cast = lambda a: a.astype(inputs.dtype)  # noqa: E731
        states, finals = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0.0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            cells = [self.cell(name=f"layer{layer}_{d}") for d in directions]
            weights = [jax.tree.map(lambda w: w.astype(dtype), cell(x.shape[-1]))
                       for cell in cells]
            if use_cudnn:
                x, final = self._cudnn_layer(cells, weights, x, lengths)
                finals = [final]
            else:
                p = (None if perturbations is None else
                     jnp.swapaxes(perturbations[layer], 0, 1).astype(dtype))
                x, finals = self._scan_layer(cells, weights, x, m, lengths, p, hoisted)
            states.append(cast(x))
        finals = [cast(f) for f in finals]
        project = lambda h: h  # noqa: E731
        if self.out_features is not None:
            # y = W_hy h + b_y, the same projection at every step.
            w_hy = self.param("W_hy", nn.initializers.lecun_normal(),
                              (x.shape[-1], self.out_features))
            b_y = self.param("b_y", nn.initializers.zeros_init(), (self.out_features,))
            project = lambda h: h @ w_hy + b_y  # noqa: E731
        return states, jnp.concatenate(finals, axis=-1), project

    @nn.nowrap
    def _scan_layer(self, cells: Sequence[RecurrentCell], weights: Sequence[Weights], x: Array,
                    m: Array | None, lengths: Array | None, perturbation: Array | None,
                    hoisted: bool) -> tuple[Array, list[Array]]:
        """One layer, each direction (forward, then backward) scanned with `run_cell`.

        Returns the time-major states [T, B, H*dirs] and each direction's final hidden state.
        """
        # Perturbations [T, B, H*dirs]: forward units first, in original time order.
        p_dirs = ([None] * len(cells) if perturbation is None else
                  jnp.split(perturbation, len(cells), -1))
        outs, finals = [], []
        for k, (cell, w, p) in enumerate(zip(cells, weights, p_dirs, strict=True)):
            # The second direction runs backwards: each sequence reversed within its length.
            flip = (lambda a: reverse_valid(a, lengths)) if k == 1 else (lambda a: a)
            xs = cell.project(w, flip(x)) if hoisted else flip(x)
            carry, hs = run_cell(cell, w, xs, m, None if p is None else flip(p),
                                 projected=hoisted, unroll=self.unroll,
                                 remat=resolve_remat(self.remat, cell.num_gates),
                                 segment=self.remat_segment,
                                 batch_groups=resolve_batch_groups(self.batch_groups, cell,
                                                                   x.shape[1]))
            outs.append(flip(hs))
            finals.append(cell.hidden_of(carry))
        return jnp.concatenate(outs, axis=-1), finals

    @nn.nowrap
    def _cudnn_layer(self, cells: Sequence[RecurrentCell], weights: Sequence[Weights], x: Array,
                     lengths: Array | None) -> tuple[Array, Array]:
        """One layer through cuDNN with the cells' own (fused) parameters."""
        if not all(isinstance(cell, LSTMCell) for cell in cells):
            raise ValueError(f"impl='cudnn' supports LSTM cells only, got "
                             f"{type(cells[0]).__name__}")
        fused = [{k: jnp.concatenate(w[k], axis=-1) for k in ("W_x", "W_h", "b")}
                 for w in weights]
        return cudnn.lstm_layer(x, lengths, fused, kernel=cudnn.require_cudnn())

    def outputs_and_states(self, inputs: Array, mask: Array | None = None,
                           perturbations: Sequence[Array] | None = None,
                           train: bool = False) -> tuple[Array, list[Array]]:
        """Return what `__call__` and `hidden_states` return, from one run of the stack.

        Args:
          inputs: [B, T, D].
          mask: optional bool [B, T], True on real steps (right padding).
          perturbations: optional list (one per layer) of [B, T, H*dirs] arrays added to h_t after
            each step, before h_t feeds the next step and the next layer; forward-direction units
            first. Zeros leave everything unchanged; their gradient is dL/dh_t.
          train: enables dropout between layers.

        """
        states, final, project = self._run(inputs, mask, perturbations, train)
        states = [jnp.swapaxes(s, 0, 1) for s in states]
        return project(states[-1] if self.return_sequences else final), states

    def hidden_states(self, inputs: Array, mask: Array | None = None,
                      perturbations: Sequence[Array] | None = None,
                      train: bool = False) -> list[Array]:
        """Return every layer's states h_t, a list of [B, T, H*dirs] (zero on padded steps).

        Arguments as in `outputs_and_states`.
        """
        return self.outputs_and_states(inputs, mask, perturbations, train)[1]

    def __call__(self, inputs: Array, mask: Array | None = None,
                 perturbations: Sequence[Array] | None = None, train: bool = False) -> Array:
        """Return y [B, T, F] if return_sequences else [B, F] (F = out_features, or H*dirs).

        Arguments as in `outputs_and_states`.
        """
        return self.outputs_and_states(inputs, mask, perturbations, train)[0]


class RecurrentModel(ScanOptions):
    """Base of the registered recurrent models: an RNN layer whose projection gives the outputs.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      return_sequences: one output per step (set for many-to-many tasks).
      hidden: size of each layer's hidden state.
      recurrent_init: init of W_h, one of RECURRENT_INITS ("orthogonal" by default, as in flax).
      num_layers, bidirectional, dropout, unroll, remat, remat_segment, input_projection, impl,
        dtype, batch_groups: the RNN layer's options, see `ScanOptions`; impl="cudnn" exists for
        the LSTM only.

    """

    num_outputs: int
    return_sequences: bool = False
    hidden: int = 128
    recurrent_init: str = "orthogonal"

    cudnn_capable: ClassVar[bool] = False  # impl="cudnn" exists for the LSTM only

    def __post_init__(self) -> None:
        check_positive("hidden", self.hidden)
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        # Before ScanOptions' checks, which would first ask for cuDNN on this machine.
        if self.impl == "cudnn" and not self.cudnn_capable:
            raise ValueError(f"impl='cudnn' exists for the lstm model only, not "
                             f"{type(self).__name__}; use impl='scan'")
        super().__post_init__()

    @nn.nowrap
    def make_cell(self) -> Callable[..., RecurrentCell]:
        """Return the cell constructor (hidden size and options bound)."""
        raise NotImplementedError

    def setup(self) -> None:
        """Build the recurrent layer with an output projection to `num_outputs`."""
        self.rnn = RNN(self.make_cell(), return_sequences=self.return_sequences,
                       out_features=self.num_outputs, **self.scan_options())

    def outputs_and_states(self, inputs: Array, train: bool = False, mask: Array | None = None,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return the outputs and the per-layer hidden states from one run of the RNN."""
        return self.rnn.outputs_and_states(inputs, mask, perturbations, train)

    def __call__(self, inputs: Array, train: bool = False, mask: Array | None = None,
                 perturbations: Sequence[Array] | None = None) -> Array:
        """Return outputs [B, num_outputs] (or [B, T, num_outputs]) for inputs [B, T, C]."""
        return self.rnn(inputs, mask, perturbations, train)

    def hidden_states(self, inputs: Array, train: bool = False, mask: Array | None = None,
                      perturbations: Sequence[Array] | None = None) -> list[Array]:
        """Return per-layer hidden states [B, T, H*dirs]; see `RNN.outputs_and_states`."""
        return self.rnn.hidden_states(inputs, mask, perturbations, train)


@register_model("rnn")
class RNNModel(RecurrentModel):
    """Elman RNN, h_t = f(W_h h_{t-1} + W_x x_t + b), many-to-one or many-to-many.

    Attributes:
      activation: "tanh" or "relu".
      recurrent_init: init of W_h: "default" (lecun normal), "orthogonal" or "identity".
      identity_scale: scale of the identity/orthogonal init.

    """

    recurrent_init: str = "default"
    activation: str = "tanh"
    identity_scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        super().__post_init__()

    @nn.nowrap
    def make_cell(self) -> Callable[..., RecurrentCell]:
        """ElmanCell with this model's options."""
        return functools.partial(ElmanCell, hidden=self.hidden, activation=self.activation,
                                 recurrent_init=self.recurrent_init,
                                 identity_scale=self.identity_scale)


@register_model("irnn")
class IRNNModel(RNNModel):
    """IRNN (Le et al. 2015): an Elman RNN with ReLU and W_h initialised to identity_scale * I."""

    recurrent_init: str = "identity"
    activation: str = "relu"


@register_model("lstm")
class LSTMModel(RecurrentModel):
    """LSTM network; see LSTMCell for the equations.

    Attributes:
      forget_bias: initial forget-gate bias.
      unroll: 2 steps per scan iteration by default: on CPU 0.9x the training-step time of
        unroll=1 at every shape measured (T=40..1000, B=16..128) on an idle machine, the same
        under load; no such consistent gain for the GRU or the Elman RNN.

    """

    forget_bias: float = 1.0
    _: dataclasses.KW_ONLY  # unroll is one of the keyword-only ScanOptions
    unroll: int = 2

    cudnn_capable: ClassVar[bool] = True

    @nn.nowrap
    def make_cell(self) -> Callable[..., RecurrentCell]:
        """LSTMCell with this model's options."""
        return functools.partial(LSTMCell, hidden=self.hidden, recurrent_init=self.recurrent_init,
                                 forget_bias=self.forget_bias)


@register_model("gru")
class GRUModel(RecurrentModel):
    """GRU network; see GRUCell for the equations.

    Attributes:
      unroll: 2 steps per scan iteration by default: with the two half-batch chains of
        batch_groups="auto" on CPU, 0.80x flax's step time at B=64, T=200 against 0.88x with
        unroll=1; 0.83-0.87x unroll=1's time at T=1000 or B=256, the same at B=16.

    """

    _: dataclasses.KW_ONLY  # unroll is one of the keyword-only ScanOptions
    unroll: int = 2

    @nn.nowrap
    def make_cell(self) -> Callable[..., RecurrentCell]:
        """GRUCell with this model's options."""
        return functools.partial(GRUCell, hidden=self.hidden, recurrent_init=self.recurrent_init)
