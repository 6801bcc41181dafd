"""Recurrent cells and the scan layer against independent references, flax's cells and masks."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import assert_padding_changes_nothing, layer_reference, train_losses

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import parallel_in_time as pit
from cnn_rnn.models.rnn.cells import ElmanCell, GRUCell, LSTMCell
from cnn_rnn.models.rnn.initializers import recurrent_initializer
from cnn_rnn.models.rnn.layer import RNN
from cnn_rnn.models.rnn.scan import flat_step, reverse_valid
from cnn_rnn.task import TaskSpec

B, T, D, H = 3, 5, 4, 6
ATOL = 1e-5

# --- Independent references, written from the equations. `xnp` is numpy (float64) or jax.numpy
# (for the explicitly unrolled, differentiable loop). p: one direction's params; x [B, T, D];
# pert [B, T, H] is added to h_t after step t.


def _sig(xnp, v):
    return 1.0 / (1.0 + xnp.exp(-v))


def _gate(p, name, k):
    h = p["W_h"].shape[0]
    return p[name][..., k * h:(k + 1) * h]


def elman_ref(xnp, p, x, pert=None, activation="tanh"):
    f = xnp.tanh if activation == "tanh" else (lambda v: xnp.maximum(v, 0.0))
    h = xnp.zeros((x.shape[0], p["W_h"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        h = f(x[:, t] @ p["W_x"] + p["b"] + h @ p["W_h"])
        h = h if pert is None else h + pert[:, t]
        out.append(h)
    return xnp.stack(out, axis=1)


def lstm_ref(xnp, p, x, pert=None):
    h = c = xnp.zeros((x.shape[0], p["W_h"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        pre = [x[:, t] @ _gate(p, "W_x", k) + h @ _gate(p, "W_h", k) + _gate(p, "b", k)
               for k in range(4)]
        i, f, o = _sig(xnp, pre[0]), _sig(xnp, pre[1]), _sig(xnp, pre[3])
        c = f * c + i * xnp.tanh(pre[2])
        h = o * xnp.tanh(c)
        h = h if pert is None else h + pert[:, t]
        out.append(h)
    return xnp.stack(out, axis=1)


def gru_ref(xnp, p, x, pert=None):
    h = xnp.zeros((x.shape[0], p["W_h"].shape[0]))
    out = []
    for t in range(x.shape[1]):
        xs = [x[:, t] @ _gate(p, "W_x", k) + _gate(p, "b", k) for k in range(3)]
        hs = [h @ _gate(p, "W_h", k) for k in range(3)]
        r, z = _sig(xnp, xs[0] + hs[0]), _sig(xnp, xs[1] + hs[1])
        n = xnp.tanh(xs[2] + r * (hs[2] + p["b_hn"]))
        h = (1 - z) * n + z * h
        h = h if pert is None else h + pert[:, t]
        out.append(h)
    return xnp.stack(out, axis=1)


CELLS = {
    "rnn": (ElmanCell(hidden=H), elman_ref),
    "irnn": (ElmanCell(hidden=H, activation="relu", recurrent_init="identity"),
             functools.partial(elman_ref, activation="relu")),
    "lstm": (LSTMCell(hidden=H), lstm_ref),
    "gru": (GRUCell(hidden=H), gru_ref),
}


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _data(seed=0, t=T):
    kx, kp = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (B, t, D)), kp


# --- Cells against the references --------------------------------------------------------------


@pytest.mark.parametrize("kind,mode", [(kind, "hoisted") for kind in CELLS] +
                         [("lstm", "per_step"), ("gru", "per_step")])
def test_cell_matches_numpy_reference(kind, mode):
    cell, ref = CELLS[kind]
    layer = RNN(cell, return_sequences=True, input_projection=mode)
    x, kp = _data()
    params = layer.init(kp, x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(kp, a.shape), params)
    hs = layer.apply({"params": params}, x, method=RNN.hidden_states)[0]
    np.testing.assert_allclose(hs, ref(np, _np(params["layer0_fwd"]), np.asarray(x, np.float64)),
                               atol=ATOL, rtol=ATOL)


def _flax_params(kind, p):
    """Our fused params -> the parameter tree of flax's built-in cell."""
    g = lambda name, k: _gate(p, name, k)  # noqa: E731
    if kind == "rnn":
        return {"i": {"kernel": p["W_x"], "bias": p["b"]}, "h": {"kernel": p["W_h"]}}
    if kind == "lstm":
        out = {}
        for k, gate in enumerate("ifgo"):
            out["i" + gate] = {"kernel": g("W_x", k)}
            out["h" + gate] = {"kernel": g("W_h", k), "bias": g("b", k)}
        return out
    out = {"i" + gate: {"kernel": g("W_x", k), "bias": g("b", k)} for k, gate in enumerate("rzn")}
    out.update({"hr": {"kernel": g("W_h", 0)}, "hz": {"kernel": g("W_h", 1)},
                "hn": {"kernel": g("W_h", 2), "bias": p["b_hn"]}})
    return out


@pytest.mark.parametrize("kind,flax_cell", [("rnn", nn.SimpleCell), ("lstm", nn.LSTMCell),
                                            ("lstm", nn.OptimizedLSTMCell), ("gru", nn.GRUCell)])
def test_cell_matches_flax_builtin(kind, flax_cell):
    cell, _ = CELLS[kind]
    layer = RNN(cell, return_sequences=True)
    x, kp = _data(1)
    params = layer.init(kp, x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(kp, a.shape), params)
    ours = layer.apply({"params": params}, x)
    theirs = nn.RNN(flax_cell(H)).apply(
        {"params": {"cell": _flax_params(kind, params["layer0_fwd"])}}, x)
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=ATOL)


def test_initialisers():
    w = recurrent_initializer("identity", 3, 0.5)(jax.random.key(0), (4, 12))
    np.testing.assert_array_equal(w, np.tile(0.5 * np.eye(4), (1, 3)))
    w = recurrent_initializer("orthogonal", 2)(jax.random.key(0), (4, 8))
    for k in range(2):
        blk = np.asarray(w[:, 4 * k:4 * k + 4])
        np.testing.assert_allclose(blk @ blk.T, np.eye(4), atol=1e-5)
    lstm = LSTMCell(hidden=3, forget_bias=2.0)
    b = lstm.init(jax.random.key(0), 2, method="weights")["params"]["b"]
    np.testing.assert_array_equal(b, [0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0])


# --- Stacking, bidirectional, masks --------------------------------------------------------------


@pytest.mark.parametrize("kind,num_layers,bidirectional",
                         [("gru", 2, True), ("lstm", 1, True), ("rnn", 2, False)])
def test_stacked_bidirectional_masked_matches_reference(kind, num_layers, bidirectional):
    cell, ref = CELLS[kind]
    lengths = [5, 2, 4]
    mask = jnp.arange(T)[None, :] < jnp.array(lengths)[:, None]
    x, kp = _data(2)
    layer = RNN(cell, num_layers=num_layers, bidirectional=bidirectional, out_features=3)
    variables = layer.init(kp, x)
    params = _np(variables["params"])
    states = layer.apply(variables, x, mask=mask, method=RNN.hidden_states)
    ref_states, ref_final = layer_reference(ref, params, x, lengths, num_layers, bidirectional)
    for got, want in zip(states, ref_states, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=ATOL)
    y = layer.apply(variables, x, mask=mask)
    np.testing.assert_allclose(y, ref_final @ params["W_hy"] + params["b_y"], atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_padding_changes_nothing(return_sequences):
    x, kp = _data(3)
    model = build_model({"name": "gru", "hidden": H, "num_layers": 2, "bidirectional": True},
                        TaskSpec("sequence_classification" if return_sequences else
                                 "classification", 3, (T, D)))
    # The same sequences with 3 extra padded steps, padding filled with 7.0.
    assert_padding_changes_nothing(model, model.init(kp, x), x, [4, 2, 5], extra=3, fill=7.0,
                                   atol=ATOL)


def test_reverse_valid_is_an_involution():
    x = jnp.arange(2 * 5).reshape(5, 2).astype(jnp.float32)  # time-major [T=5, B=2]
    r = reverse_valid(x, jnp.array([3, 5]))
    np.testing.assert_array_equal(r[:, 0], [4, 2, 0, 6, 8])
    np.testing.assert_array_equal(r[:, 1], [9, 7, 5, 3, 1])
    np.testing.assert_array_equal(reverse_valid(r, jnp.array([3, 5])), x)


# --- Gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_scan_gradient_equals_unrolled_loop(kind):
    cell, ref = CELLS[kind]
    layer = RNN(cell, return_sequences=True, remat=kind == "gru")
    x, kp = _data(4)
    params = layer.init(kp, x)["params"]
    target = jax.random.normal(kp, (B, T, H))

    def scan_loss(p):
        return jnp.sum((layer.apply({"params": p}, x) - target) ** 2)

    def loop_loss(p):
        return jnp.sum((ref(jnp, p["layer0_fwd"], x) - target) ** 2)

    g_scan, g_loop = jax.grad(scan_loss)(params), jax.grad(loop_loss)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=1e-4),
                 g_scan, g_loop)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_perturbation_gradient_is_dL_dh(kind):
    cell, ref = CELLS[kind]
    layer = RNN(cell, return_sequences=False, out_features=2)
    x, kp = _data(5)
    variables = layer.init(kp, x)
    p = variables["params"]
    zeros = [jnp.zeros((B, T, H))]
    np.testing.assert_allclose(layer.apply(variables, x, perturbations=zeros),
                               layer.apply(variables, x), atol=1e-7)

    def loss_ours(pert):
        return jnp.sum(jnp.sin(layer.apply(variables, x, perturbations=pert)))

    def loss_loop(pert):
        h_last = ref(jnp, p["layer0_fwd"], x, pert=pert)[:, -1]
        return jnp.sum(jnp.sin(h_last @ p["W_hy"] + p["b_y"]))

    np.testing.assert_allclose(jax.grad(loss_ours)(zeros)[0], jax.grad(loss_loop)(zeros[0]),
                               atol=ATOL, rtol=1e-4)


def test_perturbation_hook_bidirectional_masked():
    """The hook is in original time order for both directions; padded steps get no gradient."""
    lengths = jnp.array([5, 3, 1])
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    layer = RNN(CELLS["gru"][0], bidirectional=True, num_layers=2)
    x, kp = _data(6)
    variables = layer.init(kp, x)
    zeros = [jnp.zeros((B, T, 2 * H))] * 2

    @jax.jit
    def loss(pert):
        return jnp.sum(layer.apply(variables, x, mask=mask, perturbations=pert) ** 2)

    grads = jax.jit(jax.grad(loss))(zeros)
    for g in grads:
        assert np.all(np.asarray(g)[~np.asarray(mask)] == 0)
    # Against finite differences of the hidden-state output at layer 0, step 1, unit 0 (bwd).
    eps, idx = 1e-2, (0, 1, H)
    bumped = [zeros[0].at[idx].set(eps), zeros[1]]
    fd = (loss(bumped) - loss([zeros[0].at[idx].set(-eps), zeros[1]])) / (2 * eps)
    np.testing.assert_allclose(grads[0][idx], fd, rtol=2e-2)


# --- Models through the registry -----------------------------------------------------------------


@pytest.mark.parametrize("cell", [ElmanCell(5), ElmanCell(5, activation="relu"), LSTMCell(5),
                                  GRUCell(5)], ids=["tanh", "relu", "lstm", "gru"])
def test_closed_form_jacobian_diagonal_equals_the_full_jacobians(cell):
    """quasi-DEER's diagonal from one product per carry leaf (scan.flat_step_diagonal) is the
    diagonal of the full Jacobians (jax.jacfwd), masked steps included (diagonal 1)."""
    t, b, d = 3, 4, 2
    k = jax.random.split(jax.random.key(0), 4)
    xs = jax.random.normal(k[0], (t, b, d))
    params = cell.init(k[1], cell.initialize_carry(None, (b, d)), xs[0])["params"]
    params = jax.tree.map(lambda u: 1.5 * u + 0.3 * jax.random.normal(k[2], u.shape), params)
    h_prev = jax.random.normal(k[3], (t, b, cell.state_size()))
    mask = jnp.arange(t)[:, None] < jnp.array([3, 2, 1, 3])
    step = pit.cell_step(flat_step(cell), cell)
    inputs = (xs, mask, None)
    full = pit.jacobians(step.step, params, h_prev, inputs, diagonal=False)
    diag = pit.jacobians(step, params, h_prev, inputs, diagonal=True)
    np.testing.assert_allclose(diag, jnp.diagonal(full, axis1=-2, axis2=-1), atol=1e-6)
    assert bool(jnp.all(jnp.where(mask[..., None], True, diag == 1.0)))


def test_parameter_count_independent_of_length():
    spec = TaskSpec("classification", 10, (T, D))
    counts = []
    for t in (5, 50):
        model = build_model({"name": "lstm", "hidden": 8, "num_layers": 2}, spec)
        v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, t, D)))
        counts.append(sum(a.size for a in jax.tree.leaves(v)))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("name,kwargs", [
    ("rnn", {}), ("irnn", {}), ("lstm", {}),
    pytest.param("gru", {"bidirectional": True, "num_layers": 2, "dropout": 0.1},
                 marks=pytest.mark.slow),  # fast-suite time: docs/tests.md
])
def test_registered_model_trains(name, kwargs):
    losses = train_losses({"name": name, "hidden": 16, **kwargs},
                          TaskSpec("classification", 2, (8, 1)), steps=30)
    assert losses[-1] < 0.7 * losses[0], losses


def test_many_to_many_output_shape():
    spec = TaskSpec("sequence_classification", 4, (T, D))
    model = build_model({"name": "rnn", "hidden": 5}, spec)
    x = jnp.zeros((2, T, D))
    assert model.apply(model.init(jax.random.key(0), x), x).shape == (2, T, 4)


@pytest.mark.parametrize("config,field", [
    ({"name": "rnn", "activation": "sigmoid"}, "activation"),
    ({"name": "rnn", "recurrent_init": "zeros"}, "recurrent_init"),
    ({"name": "gru", "hidden": 0}, "hidden"),
    ({"name": "lstm", "dropout": 1.5}, "dropout"),
    ({"name": "gru", "input_projection": "fast"}, "input_projection"),
    ({"name": "lstm", "forget_gate": 1.0}, "forget_gate"),
    ({"name": "gru", "recurrent_init": "zeros"}, "recurrent_init"),
    ({"name": "lstm", "unroll": 0}, "unroll"),
    ({"name": "irnn", "remat": "sometimes"}, "remat"),
    ({"name": "gru", "remat_segment": 0}, "remat_segment"),
    ({"name": "gru", "impl": "cudnn"}, "impl"),
    ({"name": "lstm", "dtype": "int8"}, "dtype"),
    ({"name": "gru", "batch_groups": 0}, "batch_groups"),
    ({"name": "gru", "batch_groups": "many"}, "batch_groups"),
])
def test_bad_config_gives_clear_error(config, field):
    with pytest.raises(ConfigError, match=field) as e:
        build_model(config, TaskSpec("classification", 10, (T, D)))
    assert "\n" not in str(e.value)


def test_models_pass_all_their_scan_options_to_the_layer():
    model = build_model({"name": "lstm", "hidden": 4, "num_layers": 2, "bidirectional": True,
                         "dropout": 0.2, "remat": "segments", "remat_segment": 2,
                         "input_projection": "hoisted"}, TaskSpec("classification", 3, (T, D)))
    assert model.scan_options()["unroll"] == 2  # the LSTM's own default
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, RNN):
            seen.append(context.module.scan_options())
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        model.init(jax.random.key(0), jnp.zeros((1, T, D)))
    assert seen and all(s == model.scan_options() for s in seen)
    with pytest.raises(ValueError, match="unroll"):
        RNN(CELLS["gru"][0], unroll=0)
