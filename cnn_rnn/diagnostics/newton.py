"""Parallel-in-time solvability against vanishing gradients: one fact seen from two sides.

Newton's method solves h_t = f(h_{t-1}, x_t) for all t at once (`models/rnn/parallel_in_time`);
its errors propagate through the same products of Jacobians J_t = df/dh as the gradients of
backpropagation through time. So when those products shrink (gradients vanish, the largest
Lyapunov exponent is negative) Newton converges in a few iterations, and when they grow
(gradients explode, chaotic dynamics) it needs up to T iterations. For every point (task x
length x arch x stage) this module measures, on one batch of the task:

  iterations[method]  Newton iterations of "deer" and "quasi_deer" on layer 0 to max |dh| < tol
                      (max_iters = 2T + 1: enough in exact arithmetic, since every iteration
                      makes one more step exact, even after one restart with bounded Jacobians
                      (`damping`: at most T + 1 iterations before it, T + 1 after); `converged`
                      says whether float32 did, else the solver fell back to the sequential scan)
  state_error[method] max |h - h_seq| of the solver's states against the sequential scan's
  grad_error[method]  max over the layer's parameters, inputs and h_0 of max |g - g_seq| /
                      max |g_seq|, g the gradient of a random loss on the states through the
                      solver (implicit-function VJP) and through the scan (`solver_check`)
  decay_rate          the gradient-flow probe's slope of log10 ||dL/dh_t|| per step (decades per
                      step; negative = vanishing), `profiles.decay_rate`
  lyapunov            the largest Lyapunov exponent estimate of layer 0 along the sequential
                      trajectory: the mean log growth per step of a tangent vector pushed through
                      the J_t (renormalised every step), averaged over the batch (nats per step)
  loss, accuracy      the model's metrics on the task's fixed evaluation set

Stages: "init" is the model's initialisation with the recurrent weights W_h multiplied by each
`scale` (1 = the model's own init; larger moves a cell towards chaotic dynamics); "trained" is
that initialisation (scale 1) after `train_steps` Adam steps of the project's own train step on
the task at that length.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice
from cnn_rnn.data.base import DataSource
from cnn_rnn.data.registry import build_data, data_fields
from cnn_rnn.diagnostics import profiles
from cnn_rnn.diagnostics.ablation import probe_batch
from cnn_rnn.diagnostics.gradient_flow import gradient_flow, make_probe
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import parallel_in_time as pit
from cnn_rnn.models.rnn.scan import flat_step
from cnn_rnn.task import TaskSpec
from cnn_rnn.training import parallel
from cnn_rnn.training.loop import evaluate
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import create_train_state
from cnn_rnn.training.steps import eval_step, train_step

Array = jax.Array
LAYER = "layer0_fwd"  # the bottom layer of the model's RNN submodule "rnn"
STAGES = ("init", "trained")
log = logging.getLogger(__name__)


def max_iters(length: int) -> int:
    """The Newton iteration budget of a solve over `length` steps (see the module docstring)."""
    return 2 * length + 1


def lyapunov_exponent(step: Any, params: Any, xs: Array, h0: Array, key: Array) -> float:
    """Mean log growth per step of a random unit tangent vector through the J_t (nats/step).

    step(params, h [B, S], x_t [B, D]) -> h'; xs [T, B, D]; h0 [B, S]. The tangent is pushed
    through df/dh along the sequential trajectory (a jvp per step), renormalised every step.
    """
    v0 = jax.random.normal(key, h0.shape)
    v0 = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)

    def body(carry: tuple[Array, Array], x: Array) -> tuple[tuple[Array, Array], Array]:
        h, v = carry
        h_new, jv = jax.jvp(lambda u: step(params, u, x), (h,), (v,))
        norm = jnp.linalg.norm(jv, axis=-1, keepdims=True)
        return (h_new, jv / jnp.maximum(norm, 1e-30)), jnp.log(jnp.maximum(norm[:, 0], 1e-30))

    _, logs = jax.lax.scan(body, (h0, v0), xs)
    return float(jnp.mean(logs))


def scale_recurrent(params: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """Return params with every recurrent matrix W_h multiplied by `scale`."""
    def visit(tree: Any) -> Any:
        if isinstance(tree, Mapping):
            return {k: (v * scale if k == "W_h" else visit(v)) for k, v in tree.items()}
        return tree
    return visit(params)


class SolverCheck(NamedTuple):
    """One Newton solve against the sequential scan (see `solver_check`)."""

    iterations: int
    converged: bool
    state_error: float
    grad_error: float


def _relative_error(got: Any, ref: Any) -> float:
    """The largest over the float leaves of max |got - ref| / max |ref| (others skipped)."""
    errors = [float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))
              for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True)
              if jnp.issubdtype(b.dtype, jnp.inexact)]
    return max(errors, default=0.0)


def solver_check(step: pit.Step, options: pit.SolverOptions
                 ) -> Callable[[Any, Any, Array, Array], SolverCheck]:
    """Compile `check(params, xs, h0, weights)`: a solve with `options` against the scan.

    The states are compared by max |h - h_seq|; the gradients of the loss
    sum(weights * sin(h)) with respect to params, the float leaves of xs (a boolean mask gets
    none) and h0 by `_relative_error`, the solver's (its implicit-function VJP) against
    backpropagation through the sequential scan. Compiled once, reusable for other parameters
    of the same shapes.
    """
    def states_loss_grad(states: Callable[..., Any]) -> Callable[..., Any]:
        """Jitted (loss, states-or-solution), gradients: one forward and one backward pass."""
        def loss(p: Any, xs: Any, h0: Array, w: Array) -> tuple[Array, Any]:
            out = states(p, xs, h0)
            h = out.states if isinstance(out, pit.Solution) else out
            return jnp.sum(w * jnp.sin(h)), out
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True, allow_int=True))

    solved = states_loss_grad(functools.partial(pit.solve, step, options))
    scanned = states_loss_grad(functools.partial(pit.sequential_states, step))

    def check(params: Any, xs: Any, h0: Array, weights: Array) -> SolverCheck:
        (_, sol), got = solved(params, xs, h0, weights)
        (_, ref_states), ref = scanned(params, xs, h0, weights)
        return SolverCheck(int(sol.iterations), bool(sol.converged),
                           float(jnp.max(jnp.abs(sol.states - ref_states))),
                           _relative_error(got, ref))
    return check


class Setup(NamedTuple):
    """What every point of one (task, length, arch) shares: data, model, compiled functions."""

    data: DataSource
    model: Any
    batch: dict[str, Any]
    backend: parallel.Backend
    evaluate: Callable[[Any], dict[str, float]]
    measure: Callable[[Any], dict[str, Any]]


def make_measure(model: Any, spec: TaskSpec, batch: Mapping[str, Any], config: Any
                 ) -> Callable[[Any], dict[str, Any]]:
    """Compile `measure(params) -> {decay_rate, lyapunov, iterations_<method>, ...}`.

    The probe's decay rate, the Lyapunov exponent and, per method in `config.methods`, Newton's
    iterations, convergence and errors against the scan (`solver_check`) on `batch`, for the
    parameters of `model`. Compiled once; call it with any parameters of the model's shapes.
    `config`: tol, methods, and optionally linear_solve (`pit.SolverOptions`; default "auto").
    """
    probe = make_probe(model, spec, num_probes=2)
    cell = model.make_cell()
    step = flat_step(cell)
    xs = jnp.swapaxes(jnp.asarray(batch["inputs"]), 0, 1)
    length = xs.shape[0]
    h0 = cell.to_flat(cell.initialize_carry(None, (xs.shape[1], 1)))
    weights = jax.random.normal(jax.random.key(3), (length, *h0.shape))
    linear_solve = getattr(config, "linear_solve", "auto")  # older configs lack it
    checks = {m: solver_check(step, pit.SolverOptions(m, config.tol, max_iters(length),
                                                      linear_solve=linear_solve))
              for m in config.methods}

    def measure(params: Any) -> dict[str, Any]:
        flow = gradient_flow(model, {"params": params}, batch, spec, key=jax.random.key(1),
                             num_probes=2, probe=probe)
        layer = params["rnn"][LAYER]
        row = {"T": length, "decay_rate": profiles.decay_rate(flow.grad_norm[0]),
               "lyapunov": lyapunov_exponent(step, layer, xs, h0, jax.random.key(2))}
        for method, check in checks.items():
            for key, value in check(layer, xs, h0, weights)._asdict().items():
                row[f"{key}_{method}"] = value
        return row
    return measure


def task_data(task: str, length: int | None, seed: int) -> DataSource:
    """The task's data at `length`, or at its own length when it has no `length` option."""
    options = {"name": task}
    if length is not None and "length" in data_fields(task):
        options["length"] = length
    return build_data(options, seed)


def setup(task: str, length: int | None, arch: str, config: Any) -> Setup:
    """Build the data, model, backend and compiled functions of one (task, length, arch)."""
    data = task_data(task, length, config.seed)
    model = build_model({"name": arch, "hidden": config.hidden}, data.spec,
                        axis_name=parallel.AXIS)
    backend = parallel.JitBackend(jax.devices()[:1])
    p_eval = backend.compile(eval_step, model=model, spec=data.spec)
    batch = probe_batch(data, config.batch_size)
    return Setup(data, model, batch, backend,
                 lambda state: evaluate(p_eval, state, data, config.eval_batch_size, backend),
                 make_measure(model, data.spec, batch, config))


def initial_state(s: Setup, config: Any) -> Any:
    """The train state at initialisation, with the optimizer `train` uses (host arrays)."""
    tx = build_optimizer(config.optimizer, config.train_steps)
    return create_train_state(s.model, tx, s.data.spec.input_shape,
                              jax.random.PRNGKey(config.seed))


def train(s: Setup, state: Any, config: Any) -> Any:
    """`state` after `config.train_steps` steps of `steps.train_step` on the task (one device)."""
    step = s.backend.compile(train_step, donate_state=True, model=s.model, spec=s.data.spec)
    device_state = s.backend.put_state(state)
    for i in range(config.train_steps):
        device_state, _ = step(device_state, s.data.train_batch(i, config.train_batch_size))
    return s.backend.get_state(device_state)


def measure_stages(task: str, length: int | None, arch: str, config: Any
                   ) -> list[dict[str, Any]]:
    """One row per stage point of (task, length, arch): each init scale, then trained."""
    s = setup(task, length, arch, config)
    init = initial_state(s, config)
    points = [("init", float(scale), init.replace(params=scale_recurrent(init.params, scale)))
              for scale in (config.scales if "init" in config.stages else ())]
    if "trained" in config.stages:
        points.append(("trained", 1.0, train(s, init, config)))
    rows = []
    for stage, scale, state in points:
        metrics = s.evaluate(s.backend.put_state(state))
        rows.append({"task": task, "arch": arch, "stage": stage, "scale": scale,
                     "loss": metrics["loss"], "accuracy": metrics.get("accuracy"),
                     "baseline": s.data.spec.baseline,
                     "baseline_metric": s.data.spec.baseline_metric, **s.measure(state.params)})
    return rows


def grid(config: Any) -> list[tuple[str, int | None, str]]:
    """Every (task, length, arch) of the config; a task without a `length` option once.

    Raises ConfigError on an unknown stage or linear_solve (before any work).
    """
    for stage in config.stages:
        check_choice("stages", stage, STAGES)
    check_choice("linear_solve", config.get("linear_solve", "auto"), pit.LINEAR_SOLVES)
    out = []
    for task in config.tasks:
        lengths = config.lengths if "length" in data_fields(task) else (None,)
        out += [(task, None if length is None else int(length), arch)
                for length in lengths for arch in config.archs]
    return out


def run(config: Any) -> list[dict[str, Any]]:
    """Measure every point of the config; return one row each."""
    rows = []
    for point in grid(config):
        start = time.time()
        rows += measure_stages(*point, config)
        log.info("%s: measured in %.0fs", point, time.time() - start)
    return rows
