"""Gradient-flow probe against independent references; profile summaries; spectral radii."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.diagnostics import (
    GradientFlow,
    decay_rate,
    gradient_flow,
    make_probe,
    recurrent_spectral_radii,
    state_gradients,
    state_hook,
    steps_in_the_past,
)
from cnn_rnn.diagnostics.gradient_flow import forward
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import RNN
from cnn_rnn.models.tcn import TemporalBlock
from cnn_rnn.task import TaskSpec

B, T, D = 3, 7, 2
SPEC = TaskSpec("regression", 1, (T, D))


def _setup(cfg, seed=0, spec=SPEC):
    model = build_model(cfg, spec)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (B, T, D))
    batch = {"inputs": x, "targets": jax.random.normal(k2, (B, 1)),
             "weights": jnp.ones(B, jnp.float32)}
    variables = model.init(k3, x[:1])
    return model, variables, batch


# --- an unrolled reference, written from the cell equations ----------------------------------

def _cell_step(name, p, h, c, x_t):
    """One step of the named cell from its fused parameters, as in the papers' equations."""
    hidden = p["W_h"].shape[0]
    gx = x_t @ p["W_x"] + p["b"]
    gh = h @ p["W_h"]
    blk = lambda a, k: a[:, k * hidden:(k + 1) * hidden]  # noqa: E731
    sig = jax.nn.sigmoid
    if name == "rnn":
        return jnp.tanh(gx + gh), c
    if name == "lstm":
        i, f, g, o = (sig(blk(gx, k) + blk(gh, k)) if k != 2 else jnp.tanh(blk(gx, k) + blk(gh, k))
                      for k in range(4))
        c = f * c + i * g
        return o * jnp.tanh(c), c
    r = sig(blk(gx, 0) + blk(gh, 0))
    z = sig(blk(gx, 1) + blk(gh, 1))
    n = jnp.tanh(blk(gx, 2) + r * (blk(gh, 2) + p["b_hn"]))
    return (1 - z) * n + z * h, c


def _unrolled(name, params, x, ps):
    """Python loop over layers and steps; ps[l][t] is added to h^l_t. Returns (outputs, h_T)."""
    seq = [x[:, t] for t in range(x.shape[1])]
    layer = 0
    while f"layer{layer}_fwd" in params["rnn"]:
        p = params["rnn"][f"layer{layer}_fwd"]
        h = c = jnp.zeros((x.shape[0], p["W_h"].shape[0]))
        out = []
        for t, x_t in enumerate(seq):
            h, c = _cell_step(name, p, h, c, x_t)
            h = h + ps[layer][t]
            out.append(h)
        seq, layer = out, layer + 1
    return seq[-1] @ params["rnn"]["W_hy"] + params["rnn"]["b_y"], seq[-1]


def _ref_grads(name, params, batch, zeros):
    def loss(ps):
        y, _ = _unrolled(name, params, batch["inputs"], ps)
        return jnp.sum(jnp.mean((y - batch["targets"]) ** 2, axis=-1))  # Σ_b ℓ_b

    return jax.grad(loss)(zeros)


def _zeros(num_layers, hidden):
    return [[jnp.zeros((B, hidden)) for _ in range(T)] for _ in range(num_layers)]


@pytest.mark.parametrize("name,layers", [
    ("rnn", 1), ("lstm", 1),
    pytest.param("gru", 2, marks=pytest.mark.slow),  # fast-suite time: docs/tests.md
])
def test_probe_matches_grad_through_an_unrolled_python_loop(name, layers):
    hidden = 5
    model, variables, batch = _setup(dict(name=name, hidden=hidden, num_layers=layers), seed=1)
    ref = jax.jit(lambda z: _ref_grads(name, variables["params"], batch, z))(
        _zeros(layers, hidden))
    raw = state_gradients(model, variables, batch, SPEC)
    flow = gradient_flow(model, variables, batch, SPEC, key=jax.random.PRNGKey(0),
                         num_probes=None)
    for layer in range(layers):
        g_ref = jnp.stack(ref[layer], axis=1)  # [B, T, H]
        np.testing.assert_allclose(raw[layer], g_ref, rtol=1e-5, atol=1e-7)
        norms = np.linalg.norm(np.asarray(g_ref), axis=-1).mean(axis=0)
        np.testing.assert_allclose(flow.grad_norm[layer], norms, rtol=1e-5, atol=1e-8)

    # Exact Frobenius norms of ∂h_T/∂h_t, example by example, via jax.jacobian: [B, H, B, H]
    # blocks per (layer, t), of which example b's own is [b, :, b, :].
    jac = jax.jit(jax.jacobian(
        lambda ps: _unrolled(name, variables["params"], batch["inputs"], ps)[1]))(
        _zeros(layers, hidden))
    for layer in range(layers):
        want = np.mean([[np.linalg.norm(jac[layer][t][b, :, b]) for t in range(T)]
                        for b in range(B)], axis=0)
        np.testing.assert_allclose(flow.jacobian_norm[layer], want, rtol=1e-5, atol=1e-8)


def test_gaussian_jacobian_estimate_is_close_to_the_exact_norm():
    model, variables, batch = _setup(dict(name="rnn", hidden=6), seed=2)
    exact = gradient_flow(model, variables, batch, SPEC, key=jax.random.PRNGKey(0),
                          num_probes=None).jacobian_norm
    est = gradient_flow(model, variables, batch, SPEC, key=jax.random.PRNGKey(0),
                        num_probes=256).jacobian_norm
    np.testing.assert_allclose(est, exact, rtol=0.25)


def test_probe_of_a_tcn_matches_grad_through_its_blocks_composed_by_hand():
    cfg = dict(name="tcn", levels=2, hidden=3, kernel_size=2)
    model, variables, batch = _setup(cfg, seed=3)
    params = variables["params"]
    assert state_hook(model)[0] == "intercept"

    def loss(ps):
        x = batch["inputs"]
        for i, p in enumerate(ps):
            block = TemporalBlock(3, 2, 2**i, 0.0, True)
            x = block.apply({"params": params[f"TemporalBlock_{i}"]}, x, False) + p
        y = x[:, -1] @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
        return jnp.sum((y - batch["targets"]) ** 2)

    ref = jax.grad(loss)([jnp.zeros((B, T, 3)) for _ in range(2)])
    raw = state_gradients(model, variables, batch, SPEC)
    for got, want in zip(raw, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # Only the last step of the top block is read by the head: the rest of its gradient is 0.
    assert np.all(np.asarray(raw[-1])[:, :-1] == 0)


def test_lru_gradient_decays_by_the_eigenvalue_moduli():
    cfg = dict(name="lru", hidden=4, num_layers=1, pool="last", r_min=0.5, r_max=0.9)
    model, variables, batch = _setup(cfg, seed=4)
    g = np.abs(np.asarray(state_gradients(model, variables, batch, SPEC)[0]))  # [B, T, N]
    lam = np.exp(-np.exp(np.asarray(variables["params"]["blocks_0"]["recurrence"]["nu_log"])))
    k = np.arange(T)[::-1][:, None]  # distance from the last step
    np.testing.assert_allclose(g, g[:, -1:] * lam ** k, rtol=1e-4, atol=1e-9)
    radii = recurrent_spectral_radii(variables["params"])
    assert radii == pytest.approx({"blocks_0/recurrence/lambda": lam.max()})


def test_padded_steps_and_padded_examples_do_not_count():
    model, variables, batch = _setup(dict(name="gru", hidden=4), seed=5)
    mask = np.ones((B, T), bool)
    mask[0, 4:] = False
    batch = dict(batch, mask=jnp.asarray(mask))
    raw = np.asarray(state_gradients(model, variables, batch, SPEC)[0])
    assert np.all(raw[0, 4:] == 0) and np.all(np.abs(raw[0, :4]).sum(-1) > 0)
    weighted = dict(batch, weights=jnp.asarray([1.0, 1.0, 0.0]))
    flow = gradient_flow(model, variables, weighted, SPEC, key=jax.random.PRNGKey(0))
    want = np.linalg.norm(raw[:2], axis=-1).mean(axis=0)
    np.testing.assert_allclose(flow.grad_norm[0], want, rtol=1e-5, atol=1e-8)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_probe_runs_on_every_sequence_family_and_serialises():
    copy_spec = TaskSpec("sequence_classification", 3, (T, D))
    for cfg in (dict(name="mingru", hidden=4, num_layers=2),
                dict(name="cnn_rnn_hybrid", features=(4,), pool=1, hidden=4),
                dict(name="transformer", d_model=8, num_heads=2, num_layers=1, mlp_dim=8,
                     max_len=T, causal=True)):
        model, variables, batch = _setup(cfg, spec=copy_spec)
        batch = dict(batch, targets=jnp.zeros((B, T), jnp.int32))
        flow = gradient_flow(model, variables, batch, copy_spec, key=jax.random.PRNGKey(0),
                             num_probes=2)
        assert flow.grad_norm.shape == flow.jacobian_norm.shape == flow.state_norm.shape
        assert flow.grad_norm.shape[1] == T and np.isfinite(flow.grad_norm).all()
        out = flow.to_json()
        assert len(out["steps_in_the_past"]) == flow.grad_norm.shape[0]


def test_the_probe_scans_the_recurrence_once_per_forward_pass():
    model, variables, batch = _setup(dict(name="gru", hidden=4, num_layers=2))
    runs = []

    def count(next_fun, args, kwargs, context):
        if isinstance(context.module, RNN) and context.method_name == "_run":
            runs.append(1)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(count):
        outputs, states = forward(model, variables, batch, None)
    assert len(runs) == 1
    np.testing.assert_allclose(outputs, model.apply(variables, batch["inputs"]), atol=1e-6)
    for got, want in zip(states, model.apply(variables, batch["inputs"], method="hidden_states"),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_to_json_writes_non_finite_values_as_null():
    flow = GradientFlow(loss=float("nan"), grad_norm=np.array([[1.0, np.inf], [np.nan, 2.0]]),
                        jacobian_norm=np.array([[np.nan, 1.0], [1.0, 1.0]]),
                        state_norm=np.ones((2, 2)), spectral_radius={"a": np.inf, "b": 0.5},
                        jacobian="frobenius, exact")
    out = flow.to_json()
    assert out["loss"] is None
    assert out["grad_norm"] == [[1.0, None], [None, 2.0]]
    assert out["jacobian_norm"] == [[None, 1.0], [1.0, 1.0]]
    assert out["spectral_radius"] == {"a": None, "b": 0.5}
    assert json.loads(json.dumps(out, allow_nan=False)) == out  # strict JSON: no NaN/Infinity


def test_a_model_without_states_to_probe_is_refused():
    model = build_model(dict(name="cnn1d"), TaskSpec("classification", 2, (T, D)))
    with pytest.raises(ValueError, match="blocks="):
        state_hook(model)
    with pytest.raises(ValueError, match="num_probes"):
        make_probe(model, SPEC, num_probes=0)


# --- profile summaries ----------------------------------------------------------------------

def test_decay_rate_and_steps_in_the_past_of_an_exponential_profile():
    k = np.arange(100)
    profile = (0.5 * 10.0 ** (-0.1 * k))[::-1]  # g_t, t = 0..99; distance k = 99 - t
    assert decay_rate(profile) == pytest.approx(-0.1)
    assert steps_in_the_past(profile, 1e-3) == 30
    assert steps_in_the_past(profile, 1e-2) == 20
    assert steps_in_the_past(np.ones(50)) == 49  # nothing decays: every step is reached
    assert steps_in_the_past(np.r_[np.ones(5), 0.0]) == 0 and np.isnan(decay_rate([1.0, 0.0]))


def test_zeros_and_underflow_are_left_out_of_the_fit():
    k = np.arange(60)
    by_dist = 10.0 ** (-0.05 * k)
    by_dist[1::2] = 0.0  # a dilated TCN skips these taps
    by_dist[40:] = 1e-36  # underflow beyond a floor of 1e-30
    profile = by_dist[::-1]
    assert decay_rate(profile) == pytest.approx(-0.05)
    assert steps_in_the_past(profile, 1e-3) == 38  # the farthest even distance above 1e-3
    with pytest.raises(ValueError, match="threshold"):
        steps_in_the_past(profile, 0.0)


def test_spectral_radii_per_gate_block():
    lstm, v_lstm, _ = _setup(dict(name="lstm", hidden=6))
    radii = recurrent_spectral_radii(v_lstm["params"])
    assert sorted(radii) == [f"rnn/layer0_fwd/{g}" for g in "fgio"]
    assert all(r == pytest.approx(1.0, abs=1e-5) for r in radii.values())  # orthogonal blocks
    _, v_irnn, _ = _setup(dict(name="irnn", hidden=6, identity_scale=0.9))
    assert recurrent_spectral_radii(v_irnn["params"]) == pytest.approx(
        {"rnn/layer0_fwd/h": 0.9})
    _, v_rnn, _ = _setup(dict(name="rnn", hidden=6))
    w = np.asarray(v_rnn["params"]["rnn"]["layer0_fwd"]["W_h"])
    assert recurrent_spectral_radii(v_rnn["params"])["rnn/layer0_fwd/h"] == pytest.approx(
        np.abs(np.linalg.eigvals(w)).max())
