"""DEER / quasi-DEER Newton solves == the sequential scan, in states and gradients; failure paths.

The step functions here are written from the cells' equations (independent of cnn_rnn's cells).
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.diagnostics import newton, newton_report
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import damping
from cnn_rnn.models.rnn import parallel_in_time as pit
from cnn_rnn.task import TaskSpec
from configs.ablations.parallel_in_time import get_config as newton_config

B, D, H = 2, 3, 6


def tanh_rnn(p, h, x):
    return jnp.tanh(x @ p["U"] + h @ p["W"] + p["b"])


def gru(p, h, x):
    xz, xr, xn = jnp.split(x @ p["U"] + p["b"], 3, axis=-1)
    wz, wr, wn = jnp.split(p["W"], 3, axis=-1)
    z, r = jax.nn.sigmoid(xz + h @ wz), jax.nn.sigmoid(xr + h @ wr)
    n = jnp.tanh(xn + r * (h @ wn))
    return (1 - z) * n + z * h


def lstm(p, state, x):
    """LSTM on the flat state [c, h] (2H)."""
    c, h = jnp.split(state, 2, axis=-1)
    i, f, g, o = jnp.split(x @ p["U"] + h @ p["W"] + p["b"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jnp.concatenate([c, jax.nn.sigmoid(o) * jnp.tanh(c)], axis=-1)


def masked(p, h, xm):
    """A step that keeps the state on padded steps (mask 0), as the layer does."""
    x, m = xm
    return jnp.where(m[:, None], gru(p, h, x), h)


CELLS = {"rnn": (tanh_rnn, 1, 1), "gru": (gru, 3, 1), "lstm": (lstm, 4, 2),
         "masked": (masked, 3, 1)}


def problem(cell, t, scale=1.0, seed=0):
    """Step, params, xs [T, B, D] (a (x, mask) pair for "masked"), h0, a loss weight."""
    step, gates, state = CELLS[cell]
    k = jax.random.split(jax.random.key(seed), 5)
    p = {"U": jax.random.normal(k[0], (D, gates * H)) / np.sqrt(D),
         "W": scale * jax.random.normal(k[1], (H, gates * H)) / np.sqrt(H),
         "b": 0.1 * jax.random.normal(k[2], (gates * H,))}
    xs = jax.random.normal(k[3], (t, B, D))
    if cell == "masked":
        xs = (xs, jnp.arange(t)[:, None] < jnp.array([t, t // 2]))
    h0 = 0.5 * jax.random.normal(k[4], (B, state * H))
    return step, p, xs, h0, jax.random.normal(k[0], (t, B, state * H))


def check_against_sequential(cell, method, t, scale=1.0, **options):
    step, p, xs, h0, w = problem(cell, t, scale)
    opts = pit.SolverOptions(method, **options)
    check = newton.solver_check(step, opts)(p, xs, h0, w)
    assert check.converged and 1 <= check.iterations <= opts.max_iters
    assert check.state_error < 1e-4, check
    # Gradients w.r.t. params, inputs (not the boolean mask) and h0, each within 1e-3 relative.
    assert check.grad_error < 1e-3, check
    return check.iterations


FAST = [("rnn", "deer"), ("lstm", "deer"), ("gru", "quasi_deer"), ("masked", "quasi_deer")]
SLOW = [pytest.param(c, m, marks=pytest.mark.slow) for c in CELLS for m in pit.METHODS
        if (c, m) not in FAST]


@pytest.mark.parametrize("cell,method", FAST + SLOW)
def test_newton_equals_sequential_scan_in_states_and_gradients(cell, method):
    iterations = check_against_sequential(cell, method, t=24)
    assert iterations < 24  # contracting at this init: far fewer than the T-step worst case


@pytest.mark.parametrize("cell,method", [("lstm", "deer"), ("masked", "quasi_deer")])
def test_a_sequential_linear_solve_takes_the_same_newton_iterates(cell, method):
    # The same number of iterations as the all-at-once solve, each run's states and gradients
    # matching the sequential scan's (inside check_against_sequential).
    assert (check_against_sequential(cell, method, t=24, scale=2.0, linear_solve="sequential")
            == check_against_sequential(cell, method, t=24, scale=2.0))


@pytest.mark.slow
@pytest.mark.parametrize("cell,method,scale", [
    (c, m, s) for c in ("rnn", "gru", "lstm") for m in pit.METHODS for s in (1.0, 2.0)])
def test_newton_at_t1024_random_and_large_weights(cell, method, scale):
    """T = 1024; scale 2 mimics trained weights (recurrent spectral radius ~2).

    On the tanh-RNN x2 DEER's first iterate from h = 0 overflows float32: the damped restart.
    """
    check_against_sequential(cell, method, t=1024, scale=scale, max_iters=1024)


@pytest.mark.parametrize("method,t", [pytest.param("deer", 64, marks=pytest.mark.slow),
                                      ("quasi_deer", 128)])
def test_newton_overflowing_at_h0_converges_by_damped_restart(method, t):
    """x6 recurrent weights: the J_t at the h = 0 guess have norm ~6, their products over 64
    steps overflow float32 (the first iterate is non-finite), while along the true trajectory
    tanh saturates and the dynamics contract (Lyapunov exponent < 0). The bounded-Jacobian
    restart must converge by Newton (no sequential fallback) to the scan's states and gradients.
    """
    step, p, xs, h0, _ = problem("rnn", t, 6.0)
    assert newton.lyapunov_exponent(step, p, xs, h0, jax.random.key(2)) < -1.0
    diagonal = method == "quasi_deer"
    h_prev = pit._shifted(jnp.zeros((t, *h0.shape)), h0)  # the guess h = 0
    exact = pit.jacobians(step, p, h_prev, xs, diagonal).at[0].set(0.0)
    first = pit._affine_scan(exact, pit._over_time(step, p, h_prev, xs), diagonal)
    assert not bool(jnp.all(jnp.isfinite(first)))  # plain Newton's first iterate: overflow
    check_against_sequential("rnn", method, t=t, scale=6.0, max_iters=t + 1)


def test_bounded_jacobians_never_expand_and_are_exact_where_they_contract():
    scale = jnp.array([0.1, 0.5, 2.0, 8.0])[:, None, None]
    jac = scale * jax.random.normal(jax.random.key(0), (4, 3, 3)) / 3
    norms = np.linalg.norm(np.asarray(jac), axis=(-2, -1))
    got = np.asarray(damping.bounded(jac, diagonal=False))
    np.testing.assert_allclose(np.linalg.norm(got, axis=(-2, -1)), np.minimum(norms, 1), rtol=1e-6)
    np.testing.assert_array_equal(got[norms <= 1], np.asarray(jac)[norms <= 1])
    diag = jnp.array([-3.0, -0.5, 0.0, 0.9, 1.5])
    np.testing.assert_allclose(damping.bounded(diag, diagonal=True), [-1, -0.5, 0, 0.9, 1])


def test_deer_needs_fewer_iterations_than_quasi_deer():
    step, p, xs, h0, _ = problem("gru", 64, scale=1.5)
    its = {m: int(jax.jit(lambda p, m=m: pit.solve(step, pit.SolverOptions(m), p, xs, h0))(p)
                  .iterations) for m in pit.METHODS}
    assert its["deer"] < its["quasi_deer"], its


def test_jacobian_diagonal_in_groups_equals_the_full_jacobians(monkeypatch):
    step, p, xs, _, _ = problem("lstm", 5)
    h_prev = jax.random.normal(jax.random.key(3), (5, B, 2 * H))
    full = pit.jacobians(step, p, h_prev, xs, diagonal=False)
    # Groups of 3 of the 12 basis vectors: the grouped path, not one group of all.
    monkeypatch.setattr(pit, "DIAGONAL_GROUP_ELEMENTS", 3 * h_prev.size)
    diag = pit.jacobians(step, p, h_prev, xs, diagonal=True)
    np.testing.assert_allclose(diag, jnp.diagonal(full, axis1=-2, axis2=-1), atol=1e-6)


def test_unconverged_solve_falls_back_to_the_sequential_scan():
    step, p, xs, h0, w = problem("rnn", 50, scale=4.0)  # chaotic: large recurrent weights
    opts = pit.SolverOptions("deer", max_iters=2)
    sol = jax.jit(lambda p: pit.solve(step, opts, p, xs, h0))(p)
    assert not bool(sol.converged) and int(sol.iterations) == 2
    ref = pit.sequential_states(step, p, xs, h0)
    np.testing.assert_allclose(sol.states, ref, atol=1e-5)
    # Its gradient is that of the sequential scan too (the IFT holds at the exact states).
    g = jax.jit(jax.grad(lambda p: jnp.sum(w * pit.solve(step, opts, p, xs, h0).states)))(p)
    g_ref = jax.jit(jax.grad(lambda p: jnp.sum(w * pit.sequential_states(step, p, xs, h0))))(p)
    np.testing.assert_allclose(g["W"], g_ref["W"], rtol=1e-3, atol=1e-4)


def test_unconverged_solve_raises_with_on_failure_error():
    step, p, xs, h0, _ = problem("rnn", 50, scale=4.0)
    opts = pit.SolverOptions("quasi_deer", max_iters=2, on_failure="error")
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(jax.jit(lambda p: pit.solve(step, opts, p, xs, h0).states)(p))


@pytest.mark.parametrize("options,field", [
    (pit.SolverOptions("newton"), "method"), (pit.SolverOptions(on_failure="ignore"), "on_failure"),
    (pit.SolverOptions(tol=0.0), "tol"), (pit.SolverOptions(max_iters=0), "max_iters"),
    (pit.SolverOptions(linear_solve="parallel"), "linear_solve")])
def test_bad_options_are_rejected(options, field):
    with pytest.raises(ValueError, match=field):
        pit.check_options(options)


@pytest.mark.parametrize("name,impl,options", [
    pytest.param("lstm", "deer", dict(num_layers=2), marks=pytest.mark.slow),
    pytest.param("gru", "quasi_deer", dict(bidirectional=True), marks=pytest.mark.slow),
    ("rnn", "quasi_deer", dict(num_layers=2, bidirectional=True)),
])
def test_models_with_newton_impl_equal_the_scan(name, impl, options):
    """Same parameters, same outputs and gradients; masks, stacking, bidirectional, the hook."""
    spec = TaskSpec("classification", 3, (12, D))
    x = jax.random.normal(jax.random.key(1), (B, 12, D))
    mask = jnp.arange(12)[None, :] < jnp.array([[12], [7]])
    models = [build_model({"name": name, "hidden": H, "impl": i, **options}, spec)
              for i in (impl, "scan")]
    variables = models[1].init(jax.random.key(2), x)
    states = models[1].apply(variables, x, mask=mask, method="hidden_states")
    zeros = [jnp.zeros_like(s) for s in states]

    def loss(v, pert, model):
        return jnp.sum(jnp.sin(model.apply(v, x, mask=mask, perturbations=pert)))

    out, inter = models[0].apply(variables, x, mask=mask, mutable="intermediates")
    np.testing.assert_allclose(out, models[1].apply(variables, x, mask=mask), atol=1e-4)
    sown = jax.tree.leaves_with_path(inter)
    # T + 1 iterations at most: after T every step is exact, one more confirms it.
    assert any("newton_iterations" in jax.tree_util.keystr(k) and 1 <= v <= 13 for k, v in sown)
    assert all(bool(v) for k, v in sown if "newton_converged" in jax.tree_util.keystr(k))
    g_newton, g_scan = (jax.jit(jax.grad(functools.partial(loss, model=m), argnums=(0, 1)))(
        variables, zeros) for m in models)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3),
                 g_newton, g_scan)


@pytest.mark.parametrize("field", ["newton_on_failure", "newton_linear_solve"])
def test_bad_newton_option_is_a_config_error(field):
    with pytest.raises(ConfigError, match=field):
        build_model({"name": "gru", "impl": "deer", field: "ignore"},
                    TaskSpec("classification", 3, (12, D)))


def test_lyapunov_exponent_of_a_linear_map_is_log_of_its_largest_eigenvalue():
    a = jnp.array([0.5, 0.2, -0.3])
    xs = jnp.zeros((200, B, 1))
    got = newton.lyapunov_exponent(lambda p, h, x: p * h, a, xs, jnp.ones((B, 3)),
                                   jax.random.key(0))
    assert abs(got - np.log(0.5)) < 0.02, got
    rows = [{"x": float(i), "y": float(i) ** 3} for i in range(5)]
    assert newton_report.correlation(rows, "x", "y") == pytest.approx(1.0)


def test_fewer_than_three_solves_get_no_rank_correlation():
    row = dict(T=600, stage="trained", lyapunov=-0.005, decay_rate=-0.001,
               iterations_deer=18, converged_deer=True)
    one, three = (newton_report.method_sentences(rows, "deer")
                  for rows in ([row], [dict(row, lyapunov=v) for v in (-0.1, -0.01, 0.01)]))
    assert one[0] == "- deer: 1 converged point(s), too few for a rank correlation."
    assert "nan" not in "".join(one) and "18-18 iterations" in one[1]
    assert "rank correlation of iterations/T with the Lyapunov exponent" in three[0]


@pytest.mark.slow
def test_parallel_in_time_experiment_writes_its_report(cli, tmp_path):
    workdir = str(tmp_path / "pit")
    out = cli("experiments.parallel_in_time",
              "--config=configs/ablations/parallel_in_time.py:smoke", f"--workdir={workdir}",
              devices=1)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.load(open(f"{workdir}/results.json"))
    assert [(r["task"], r["stage"], r["scale"]) for r in rows] == [
        ("adding", "init", 0.5), ("adding", "init", 4.0), ("adding", "trained", 1.0)]
    # Contracting (scale 0.5) needs fewer DEER iterations than chaotic (scale 4).
    assert rows[0]["lyapunov"] < 0 < rows[1]["lyapunov"]
    assert rows[0]["iterations_deer"] < rows[1]["iterations_deer"]
    for r in (rows[0], rows[2]):  # the contracting points: both solvers match the scan
        for m in pit.METHODS:
            assert r[f"converged_{m}"] and r[f"state_error_{m}"] < 1e-4, r
            assert r[f"grad_error_{m}"] < 1e-3, r
    report = open(f"{workdir}/report.md").read()
    assert "| adding | rnn | init | 0.5 | 16 |" in report
    assert "| adding | rnn | trained | 1 | 16 |" in report
    assert "negative: largest state error over all 4 converged" in report


def test_solver_check_reports_the_error_of_an_inexact_solve():
    """A tolerance of 10 stops Newton after one iteration: the check must see the error."""
    step, p, xs, h0, w = problem("rnn", 24)
    loose = pit.SolverOptions("quasi_deer", tol=10.0)
    check = newton.solver_check(step, loose)(p, xs, h0, w)
    assert check.converged and check.iterations == 1
    h, ref = h0, []
    for x in xs:  # the sequential recurrence, by hand
        h = tanh_rnn(p, h, x)
        ref.append(h)
    states = pit.solve(step, loose, p, xs, h0).states
    assert check.state_error == pytest.approx(float(jnp.max(jnp.abs(states - jnp.stack(ref)))))
    assert check.state_error > 1e-2 and check.grad_error > 1e-2, check


def test_trained_stage_changes_the_parameters_and_lowers_the_loss():
    config = newton_config("smoke")
    s = newton.setup("adding", 8, "gru", config)
    init = newton.initial_state(s, config)
    trained = newton.train(s, init, config)
    assert int(trained.step) == config.train_steps
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(trained.params), jax.tree.leaves(init.params), strict=True)]
    assert min(moved) > 0, moved  # every parameter was updated
    losses = [s.evaluate(s.backend.put_state(st))["loss"] for st in (init, trained)]
    assert losses[1] < 0.9 * losses[0], losses  # 20 steps: 1.48 -> 0.74 when written


def test_experiment_rejects_a_missing_config(cli):
    out = cli("experiments.parallel_in_time", "--workdir=/tmp/unused", devices=1)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1].startswith("error: --config")


@pytest.mark.parametrize("field,value", [("stages", ("init", "finished")),
                                         ("linear_solve", "parallel")])
def test_the_experiment_grid_names_a_bad_field(field, value):
    c = newton_config("smoke")
    c[field] = value
    with pytest.raises(ConfigError, match=f"^{field}: "):
        newton.grid(c)


def test_a_non_finite_iterate_never_reads_as_converged():
    nan = jnp.full((4, 2, 3), jnp.nan)
    assert float(pit._max_change(nan, jnp.zeros_like(nan))) == np.inf
    assert float(pit._max_change(jnp.ones((2, 3)), jnp.zeros((2, 3)))) == 1.0
