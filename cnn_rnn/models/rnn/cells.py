"""Recurrent cells: the equations of ONE time step of the Elman RNN, the LSTM and the GRU.

The same weights are applied at every step (weight sharing over time), so the parameter count does
not depend on the sequence length. A cell knows nothing about time: the engines in `scan.py` run
it over a sequence, and `layer.py` stacks it, runs it backwards and masks it.

The cell protocol (what every engine, the layer and the gradient-flow probe rely on):
  * flax's `(carry, x) -> (carry, y)`: `cell(carry, x_t)` returns the new carry and h_t, and
    `cell.initialize_carry(rng, x_shape)` the zero state, as for `flax.linen.LSTMCell`.
  * The parameters are FUSED: W_x [D, G*H], W_h [H, G*H], b [G*H] for G gates; column block k
    belongs to gate k of the cell's documented gate order. `cell.weights(D)` creates (at init) or
    reads them and returns them split per gate (`unpack`); the rest is pure functions of that
    dict: `project(w, x)` = W_x x + b per gate (hoistable out of the scan), `step(w, carry, xp_t)`
    from projected inputs and `step_input(w, carry, x_t)` from raw ones.
  * A carry is a pytree of [B, H] arrays; `hidden_of` / `with_hidden` read and replace h_t in it,
    `to_flat` / `from_flat` map it to one [B, state_size] vector (for parallel-in-time solvers:
    see `scan.flat_step`).
A new cell sets `num_gates` and writes `update(carry, pre)` from the gates' pre-activations
W_x x + b + W_h h (or overrides `step`, with `additive = False`, as the GRU does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_number
from cnn_rnn.models.rnn.initializers import (
    RECURRENT_INITS,
    Initializer,
    gate_blocks,
    recurrent_initializer,
)
from cnn_rnn.models.rows import matmul_rows

Array = jax.Array
Carry = Any  # h [B, H] for Elman and GRU; (c, h) for LSTM.
Gates = tuple[Array, ...]  # one [..., H] array per gate, in the cell's gate order
Weights = dict[str, Any]  # what a step reads: "W_x", "W_h", "b" (tuples of gate blocks), extras

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class RecurrentCell(nn.Module):
    """Base class of the cells: fused parameters, the input projection and the cell protocol.

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
    cpu_batch_groups: ClassVar[int] = 1  # batch_groups="auto" on CPU (see scan.resolve_*)
    supports_cudnn: ClassVar[bool] = False  # impl="cudnn" runs it (see cudnn.py)

    def __post_init__(self) -> None:
        check_int("model.hidden", self.hidden, 1)
        check_choice("model.recurrent_init", self.recurrent_init, RECURRENT_INITS)
        check_number("model.identity_scale", self.identity_scale, strict=True)
        super().__post_init__()

    # --- flax's protocol ---------------------------------------------------------------------

    def __call__(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One step from the raw input x_t [B, D]: return (new carry, h_t)."""
        new = self.step_input(self.weights(x.shape[-1]), carry, x)
        return new, self.hidden_of(new)

    @nn.nowrap
    def initialize_carry(self, rng: Array | None, input_shape: tuple[int, ...],
                         dtype: Any = jnp.float32) -> Carry:
        """Return the zero state h_0 for inputs of shape (*batch, D) (rng unused: zeros)."""
        return jnp.zeros((*input_shape[:-1], self.hidden), dtype)

    # --- parameters --------------------------------------------------------------------------

    @nn.nowrap
    def bias_init(self) -> Initializer:
        """Return the initializer of the fused bias b [G*H] (zeros unless overridden)."""
        return nn.initializers.zeros_init()

    @nn.compact
    def weights(self, in_features: int) -> Weights:
        """Create (at init) or read the fused parameters; return them as `unpack` does."""
        g, h = self.num_gates, self.hidden
        params = {
            "W_x": self.param("W_x", nn.initializers.lecun_normal(), (in_features, g * h)),
            "W_h": self.param("W_h", recurrent_initializer(self.recurrent_init, g,
                                                           self.identity_scale), (h, g * h)),
            "b": self.param("b", self.bias_init(), (g * h,)),
        }
        for name in self.extra_biases:
            params[name] = self.param(name, nn.initializers.zeros_init(), (h,))
        return self.unpack(params)

    @nn.nowrap
    def unpack(self, params: Mapping[str, Array]) -> Weights:
        """The step's view of the raw parameters {"W_x", "W_h", "b", extras} (pure).

        "W_x", "b", "W_h" become tuples of G gate blocks ([D, H], [H], [H, H]); the fused
        "W_xh" = [W_x; W_h] [D+H, G*H] and "b_all" [G*H] serve `fused_input_step`. Unused
        arrays cost nothing under jit.
        """
        g = self.num_gates
        weights: Weights = {k: params[k] for k in self.extra_biases}
        weights.update({k: gate_blocks(params[k], g) for k in ("W_x", "W_h", "b")},
                       W_xh=jnp.concatenate([params["W_x"], params["W_h"]], axis=0),
                       b_all=params["b"])
        return weights

    # --- one step, pure ----------------------------------------------------------------------

    @staticmethod
    def project(weights: Weights, x: Array) -> Gates:
        """Input projection W_x x + b for x [..., D], one [..., H] array per gate."""
        return tuple(matmul_rows(x, w) + b
                     for w, b in zip(weights["W_x"], weights["b"], strict=True))

    @nn.nowrap
    def update(self, carry: Carry, pre: Gates) -> Carry:
        """The new carry from the old one and the gates' pre-activations (additive cells)."""
        raise NotImplementedError

    @nn.nowrap
    def step(self, weights: Weights, carry: Carry, xp: Gates) -> Carry:
        """One time step from the projected inputs xp_t: pre^k = xp_t^k + h_{t-1} W_h^k."""
        h = self.hidden_of(carry)
        return self.update(carry, tuple(x + h @ w
                                        for x, w in zip(xp, weights["W_h"], strict=True)))

    @nn.nowrap
    def step_input(self, weights: Weights, carry: Carry, x: Array) -> Carry:
        """One time step from the raw input x_t [B, D] (the per-step projection).

        With `fused_input_step` (the LSTM) all pre-activations are ONE matmul
        [x_t, h_{t-1}] [W_x; W_h] + b, then split (faster on CPU, see docs/performance_notes.md).
        """
        if not (self.additive and self.fused_input_step):
            return self.step(weights, carry, self.project(weights, x))
        h = self.hidden_of(carry)
        pre = jnp.concatenate([x, h], axis=-1) @ weights["W_xh"] + weights["b_all"]
        return self.update(carry, gate_blocks(pre, self.num_gates))

    # --- the carry ---------------------------------------------------------------------------

    @staticmethod
    def hidden_of(carry: Carry) -> Array:
        """Return the hidden state h [B, H] inside a carry."""
        return carry

    @staticmethod
    def with_hidden(carry: Carry, h: Array) -> Carry:
        """Return the carry with its hidden state replaced by h."""
        return h

    @nn.nowrap
    def state_size(self) -> int:
        """Size of the flat state vector: H times the number of [B, H] arrays in the carry."""
        return self.hidden * len(jax.tree.leaves(self.initialize_carry(None, (1, 1))))

    @staticmethod
    def to_flat(carry: Carry) -> Array:
        """The carry as one vector [..., state_size] (its leaves concatenated)."""
        return jnp.concatenate(jax.tree.leaves(carry), axis=-1)

    @nn.nowrap
    def from_flat(self, state: Array) -> Carry:
        """The inverse of `to_flat`."""
        treedef = jax.tree.structure(self.initialize_carry(None, (1, 1)))
        return jax.tree.unflatten(treedef, jnp.split(state, treedef.num_leaves, axis=-1))


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
        check_choice("model.activation", self.activation, tuple(ACTIVATIONS))
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
    supports_cudnn: ClassVar[bool] = True

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
    def initialize_carry(self, rng: Array | None, input_shape: tuple[int, ...],
                         dtype: Any = jnp.float32) -> Carry:
        """Return zero cell and hidden states (c_0, h_0)."""
        zeros = jnp.zeros((*input_shape[:-1], self.hidden), dtype)
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
    additive: ClassVar[bool] = False  # the reset gate multiplies W_h^n h + b_hn
    # Two half-batch chains per step on CPU (docs/performance_notes.md, "Batch groups").
    cpu_batch_groups: ClassVar[int] = 2

    @nn.nowrap
    def step(self, weights: Weights, carry: Carry, xp: Gates) -> Carry:
        """h_t from h_{t-1} and xp_t = W_x x_t + b."""
        xr, xz, xn = xp
        w_hr, w_hz, w_hn = weights["W_h"]
        r = jax.nn.sigmoid(xr + carry @ w_hr)
        z = jax.nn.sigmoid(xz + carry @ w_hz)
        n = jnp.tanh(xn + r * (carry @ w_hn + weights["b_hn"]))
        return (1.0 - z) * n + z * carry
