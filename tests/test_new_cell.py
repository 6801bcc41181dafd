"""A new recurrent cell is one class and one registration; everything else comes with it.

The "min-RNN" below exists only in this file. Without any other edit it runs stacked,
bidirectional and masked in the RNN layer, under remat, as a registered model that trains, through
the gradient-flow probe, inside the CNN+RNN hybrid, and as a flat step for parallel-in-time
solvers; each is checked against the equations written out by hand.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import layer_reference, train_losses

from cnn_rnn.diagnostics.gradient_flow import state_gradients
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import RNN, LSTMCell, RecurrentCell, register_cell
from cnn_rnn.models.rnn.scan import flat_step
from cnn_rnn.task import TaskSpec


class MinRNNCell(RecurrentCell):
    """h_t = (1 - z_t) h_{t-1} + z_t tanh(n_t),  (z, n) = W_x x_t + b + W_h h_{t-1} (gates z, n)."""

    num_gates: ClassVar[int] = 2

    def update(self, carry, pre):
        z, n = jax.nn.sigmoid(pre[0]), jnp.tanh(pre[1])
        return (1.0 - z) * carry + z * n


register_cell("test_minrnn", MinRNNCell)

B, T, D, H = 3, 5, 2, 4
ATOL = 1e-5


def minrnn_ref(xnp, p, x, pert=None):
    """The equations, unrolled: x [B, T, D] -> h [B, T, H]; pert [B, T, H] is added to h_t."""
    h = xnp.zeros((x.shape[0], p["W_h"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        pre = x[:, t] @ p["W_x"] + p["b"] + h @ p["W_h"]
        z, n = 1.0 / (1.0 + xnp.exp(-pre[:, :H])), xnp.tanh(pre[:, H:])
        h = (1.0 - z) * h + z * n
        h = h if pert is None else h + pert[:, t]
        out.append(h)
    return xnp.stack(out, axis=1)


def _data(seed=0):
    kx, kp = jax.random.split(jax.random.key(seed))
    lengths = [5, 2, 4]
    mask = jnp.arange(T)[None, :] < jnp.array(lengths)[:, None]
    return jax.random.normal(kx, (B, T, D)), mask, lengths, kp


@pytest.mark.parametrize("remat", ["none", "step", "segments"])
def test_stacked_bidirectional_masked_and_remat_match_the_equations(remat):
    x, mask, lengths, kp = _data()
    layer = RNN(MinRNNCell(hidden=H), num_layers=2, bidirectional=True, out_features=3,
                remat=remat, remat_segment=2)
    variables = layer.init(kp, x)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    states = layer.apply(variables, x, mask=mask, method=RNN.hidden_states)
    want_states, want_final = layer_reference(minrnn_ref, params, x, lengths, 2, True)
    for got, want in zip(states, want_states, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.apply(variables, x, mask=mask),
                               want_final @ params["W_hy"] + params["b_y"], atol=ATOL, rtol=ATOL)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_gradients_under_remat_equal_the_hand_loop():
    x, _, _, kp = _data(1)
    layer = RNN(MinRNNCell(hidden=H), return_sequences=True, remat="segments", remat_segment=2)
    params = layer.init(kp, x)["params"]
    g_ours = jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply({"params": p}, x))))(params)
    g_loop = jax.grad(lambda p: jnp.sum(jnp.sin(minrnn_ref(jnp, p, x))))(params["layer0_fwd"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=1e-4),
                 g_ours["layer0_fwd"], g_loop)


def test_registered_model_probe_and_hybrid():
    spec = TaskSpec("regression", 1, (T, D))
    model = build_model({"name": "test_minrnn", "hidden": H}, spec)
    x, _, _, kp = _data(2)
    batch = {"inputs": x, "targets": jax.random.normal(kp, (B, 1)), "weights": jnp.ones(B)}
    variables = model.init(kp, x)
    p = variables["params"]["rnn"]

    def loop_loss(pert):  # Σ_b of each example's MSE, as the probe defines ℓ_b
        y = minrnn_ref(jnp, p["layer0_fwd"], x, pert)[:, -1] @ p["W_hy"] + p["b_y"]
        return jnp.sum(jnp.mean((y - batch["targets"]) ** 2, axis=-1))

    np.testing.assert_allclose(state_gradients(model, variables, batch, spec)[0],
                               jax.grad(loop_loss)(jnp.zeros((B, T, H))), atol=1e-6, rtol=1e-4)
    hybrid = build_model({"name": "cnn_rnn_hybrid", "cell": "test_minrnn", "hidden": H,
                          "features": (3,), "pool": 1}, spec)
    assert hybrid.apply(hybrid.init(kp, x), x).shape == (B, 1)


def test_registered_model_trains():
    losses = train_losses({"name": "test_minrnn", "hidden": 8},
                          TaskSpec("classification", 2, (6, 1)), steps=20)
    assert losses[-1] < 0.7 * losses[0], losses


def test_flat_step_is_the_cell_step():
    x, _, _, kp = _data(3)
    cell = MinRNNCell(hidden=H)
    params = RNN(cell).init(kp, x)["params"]["layer0_fwd"]
    f = flat_step(cell)
    s = jnp.zeros((B, cell.state_size()))
    for t in range(T):
        s = f(params, s, x[:, t])
    np.testing.assert_allclose(s, minrnn_ref(np, params, np.asarray(x))[:, -1], atol=ATOL)


def test_flat_step_of_a_two_part_carry_and_the_flax_protocol():
    """The LSTM's carry (c, h) as one [B, 2H] vector; cell(carry, x) is flax's (carry, y) step."""
    x, _, _, kp = _data(4)
    cell = LSTMCell(hidden=H)
    layer = RNN(cell, return_sequences=True)
    variables = layer.init(kp, x)
    params = variables["params"]["layer0_fwd"]
    states = layer.apply(variables, x, method=RNN.hidden_states)[0]
    f = flat_step(cell)
    s = cell.to_flat(cell.initialize_carry(None, x[:, 0].shape))
    carry = cell.from_flat(s)
    assert s.shape == (B, cell.state_size()) == (B, 2 * H)
    for t in range(T):
        s = f(params, s, x[:, t])
        carry, y = cell.apply({"params": params}, carry, x[:, t])
        np.testing.assert_allclose(cell.hidden_of(cell.from_flat(s)), states[:, t], atol=ATOL)
        np.testing.assert_allclose(y, states[:, t], atol=ATOL)
