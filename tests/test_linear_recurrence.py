"""LRU and minGRU: chunked == associative == sequential scan == the equations; masks; hook."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import assert_padding_changes_nothing, train_losses

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.linear_recurrence import LRU, MinGRU
from cnn_rnn.models.linear_scan import linear_scan, resolve_impl
from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec

B, T, D, N = 2, 9, 3, 5
TOL = 1e-5


def _x(seed=0, t=T, d=D):
    return jax.random.normal(jax.random.key(seed), (B, t, d))


ENGINES = [("chunked", 4, False), ("chunked", 4, True), ("chunked", 32, True),
           ("associative", 32, False), ("parallel", 32, True), ("sequential", 32, True)]


def _loop_scan(a, b):
    """h_t = a_t h_{t-1} + b_t as an explicit jax.numpy loop (differentiated by plain autodiff)."""
    h, out = jnp.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return jnp.stack(out, axis=1)


@pytest.mark.parametrize("impl,chunk,complex_coeffs", ENGINES)
def test_linear_scan_engines_equal_the_loop_in_values_and_gradients(impl, chunk, complex_coeffs):
    t = 11  # not a multiple of the chunk lengths: the padding is exercised
    ka, kb, kc, kd = jax.random.split(jax.random.key(0), 4)
    if complex_coeffs:  # complex a as in the LRU: modulus < 1, any phase
        a = jnp.exp(jax.random.uniform(ka, (B, t, N), minval=-1, maxval=0)
                    + 1j * jax.random.uniform(kc, (B, t, N), maxval=6.28))
        b = jax.random.normal(kb, (B, t, N)) + 1j * jax.random.normal(kd, (B, t, N))
    else:  # negative decays too
        a = jax.random.uniform(ka, (B, t, N), minval=-1, maxval=1)
        b = jax.random.normal(kb, (B, t, N))
    w = jax.random.normal(kc, (B, t, N))

    def ours(a, b):
        if not complex_coeffs:
            return linear_scan(a, b, impl, chunk)
        pair = lambda z: (jnp.real(z), jnp.imag(z))  # noqa: E731
        h = linear_scan(pair(a), pair(b), impl, chunk)
        return h[0] + 1j * h[1]

    def loss(scan, a, b):
        return jnp.sum(w * jnp.abs(jnp.sin(scan(a, b))) ** 2)

    np.testing.assert_allclose(ours(a, b), _loop_scan(a, b), atol=TOL, rtol=TOL)
    g_ours = jax.grad(lambda a, b: loss(ours, a, b), argnums=(0, 1))(a, b)
    g_loop = jax.grad(lambda a, b: loss(_loop_scan, a, b), argnums=(0, 1))(a, b)
    for u, v in zip(g_ours, g_loop, strict=True):
        np.testing.assert_allclose(u, v, atol=1e-4, rtol=1e-4)


def test_linear_scan_broadcasts_a_constant_decay_and_auto_picks_by_backend():
    b = jax.random.normal(jax.random.key(1), (B, T, N))
    lam = jnp.linspace(0.1, 0.9, N)
    np.testing.assert_allclose(linear_scan(lam, b, "chunked", 4),
                               _loop_scan(jnp.broadcast_to(lam, b.shape), b), atol=TOL)
    expected = "sequential" if jax.default_backend() == "cpu" else "associative"
    assert resolve_impl("auto") == expected
    assert resolve_impl("parallel") == "associative"


def _mingru_loop(p, x, pert=None):
    """minGRU from its equations, as an explicitly unrolled loop (jax.numpy)."""
    hdim = p["W_x"].shape[1] // 2
    h, out = jnp.zeros((x.shape[0], hdim)), []
    for t in range(x.shape[1]):
        u = x[:, t] @ p["W_x"] + p["b"]
        z, h_tilde = jax.nn.sigmoid(u[:, :hdim]), u[:, hdim:]
        h = (1 - z) * h + z * h_tilde
        h = h if pert is None else h + pert[:, t]
        out.append(h)
    return jnp.stack(out, axis=1)


def _lru_loop(p, x, pert=None):
    """LRU from its equations (complex128 numpy-style loop in jax.numpy)."""
    lam = jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
    d = x.shape[-1]
    bmat = (p["B_re"] + 1j * p["B_im"]).T / np.sqrt(2 * d)  # [N, D], as in the paper
    cmat = (p["C_re"] + 1j * p["C_im"]).T / np.sqrt(p["nu_log"].shape[0])  # [D, N]
    h, hs, ys = jnp.zeros((x.shape[0], lam.shape[0]), jnp.complex64), [], []
    for t in range(x.shape[1]):
        h = lam * h + jnp.exp(p["gamma_log"]) * (x[:, t] @ bmat.T)
        h = h if pert is None else h + pert[:, t]
        hs.append(h)
        ys.append((h @ cmat.T).real + p["D"] * x[:, t])
    return jnp.stack(ys, axis=1), jnp.stack(hs, axis=1)


def test_mingru_matches_equations():
    x = _x(1)
    layer = MinGRU(N)
    p = layer.init(jax.random.key(2), x)["params"]
    _, h = layer.apply({"params": p}, x)
    np.testing.assert_allclose(h, _mingru_loop(p, x), atol=TOL, rtol=TOL)


def test_lru_matches_equations_and_ring_init():
    x = _x(3)
    layer = LRU(N, r_min=0.5, r_max=0.9)
    p = layer.init(jax.random.key(4), x)["params"]
    y, h = layer.apply({"params": p}, x)
    y_ref, h_ref = _lru_loop(p, x)
    np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(y, y_ref, atol=TOL, rtol=TOL)
    modulus = np.exp(-np.exp(np.asarray(p["nu_log"])))
    assert np.all((modulus >= 0.5 - 1e-6) & (modulus <= 0.9 + 1e-6))
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-5)


# The LRU's complex pairs are checked engine by engine above; its model-level run is -m slow.
@pytest.mark.parametrize("name", [pytest.param("lru", marks=pytest.mark.slow), "mingru"])
def test_parallel_and_sequential_agree_in_outputs_and_gradients(name):
    spec = TaskSpec("classification", 4, (T, D))
    x = _x(5)
    mask = jnp.arange(T)[None, :] < jnp.array([[T], [4]])
    models = [build_model({"name": name, "hidden": N, "d_model": 6, "num_layers": 1,
                           "impl": impl}, spec)
              for impl in ("chunked", "associative", "sequential")]
    params = models[0].init(jax.random.key(6), x)["params"]

    def loss(p, model):
        return jnp.sum(jnp.sin(model.apply({"params": p}, x, mask=mask)))

    outs = [jax.jit(m.apply)({"params": params}, x, mask=mask) for m in models]
    grads = [jax.jit(jax.grad(functools.partial(loss, model=m)))(params) for m in models]
    for out, grad in zip(outs[:-1], grads[:-1], strict=True):
        np.testing.assert_allclose(out, outs[-1], atol=TOL, rtol=TOL)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=TOL, rtol=1e-4),
                     grad, grads[-1])


@pytest.mark.parametrize("name,pool,many", [("lru", "mean", False), ("mingru", "last", False),
                                            ("mingru", "mean", True)])
def test_padding_changes_nothing(name, pool, many):
    spec = TaskSpec("sequence_classification" if many else "classification", 3, (T, D))
    model = build_model({"name": name, "hidden": N, "pool": pool, "num_layers": 1}, spec)
    x = _x(7)
    assert_padding_changes_nothing(model, model.init(jax.random.key(8), x), x, [5, 9], extra=4,
                                   fill=5.0, atol=TOL)


@pytest.mark.parametrize("impl", ["chunked", "associative", "sequential"])
def test_perturbation_gradient_is_dL_dh_mingru(impl):
    x = _x(9)
    layer = MinGRU(N, impl=impl)
    p = layer.init(jax.random.key(10), x)["params"]
    zeros = jnp.zeros((B, T, N))

    def loss_ours(pert):
        return jnp.sum(jnp.sin(layer.apply({"params": p}, x, perturbation=pert)[0][:, -1]))

    def loss_loop(pert):
        return jnp.sum(jnp.sin(_mingru_loop(p, x, pert)[:, -1]))

    np.testing.assert_allclose(jax.grad(loss_ours)(zeros), jax.grad(loss_loop)(zeros),
                               atol=TOL, rtol=1e-4)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_perturbation_gradient_is_dL_dh_lru_and_model_hook():
    x = _x(11)
    layer = LRU(N, r_min=0.6)
    p = layer.init(jax.random.key(12), x)["params"]
    zeros = jnp.zeros((B, T, N), jnp.complex64)

    def loss_ours(pert):
        return jnp.sum(layer.apply({"params": p}, x, perturbation=pert)[0][:, -1] ** 2)

    def loss_loop(pert):
        return jnp.sum(_lru_loop(p, x, pert)[0][:, -1] ** 2)

    np.testing.assert_allclose(jax.grad(loss_ours)(zeros), jax.grad(loss_loop)(zeros),
                               atol=TOL, rtol=1e-4)
    # The registered model exposes the same hook, one array per block, and the states.
    model = build_model({"name": "lru", "hidden": N, "num_layers": 2},
                        TaskSpec("classification", 3, (T, D)))
    v = model.init(jax.random.key(0), x)
    states = model.apply(v, x, method="hidden_states")
    assert [s.shape for s in states] == [(B, T, N)] * 2
    zero_list = [jnp.zeros_like(s) for s in states]
    np.testing.assert_allclose(model.apply(v, x, perturbations=zero_list), model.apply(v, x),
                               atol=1e-7)
    g = jax.grad(lambda ps: jnp.sum(model.apply(v, x, perturbations=ps) ** 2))(zero_list)
    assert all(np.all(np.isfinite(a)) and np.any(a != 0) for a in g)


def test_parameter_count_independent_of_length():
    spec = TaskSpec("classification", 3, (T, D))
    for name in ("lru", "mingru"):
        model = build_model({"name": name, "hidden": N}, spec)
        counts = {t: sum(a.size for a in jax.tree.leaves(
            jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, t, D)))))
                  for t in (4, 40)}
        assert counts[4] == counts[40]


@pytest.mark.parametrize("name", ["lru", "mingru"])
def test_registered_model_trains(name):
    losses = train_losses({"name": name, "hidden": 8, "d_model": 8, "num_layers": 1},
                          TaskSpec("classification", 2, (8, 1)), steps=30)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("config,field", [
    ({"name": "lru", "impl": "fast"}, "impl"),
    ({"name": "mingru", "pool": "max"}, "pool"),
    ({"name": "lru", "r_min": 0.9, "r_max": 0.5}, "r_min"),
    ({"name": "lru", "r_max": "1"}, "r_max"),
    ({"name": "lru", "max_phase": 0.0}, "max_phase"),
    ({"name": "lru", "max_phase": -1.0}, "max_phase"),
    ({"name": "mingru", "r_min": 0.5}, "r_min"),
])
def test_bad_config_gives_clear_error(config, field):
    with pytest.raises(ConfigError, match=field) as e:
        build_model(config, TaskSpec("classification", 3, (T, D)))
    assert "\n" not in str(e.value)


def test_lru_layer_checks_its_eigenvalue_init_too():
    with pytest.raises(ValueError, match="max_phase"):
        LRU(N, max_phase=0.0)
    with pytest.raises(ValueError, match="r_min"):
        LRU(N, r_min=0.9, r_max=0.5)
