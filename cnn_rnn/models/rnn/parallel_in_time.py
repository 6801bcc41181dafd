"""Nonlinear recurrences solved for all time steps at once by Newton's method (DEER, quasi-DEER).

A recurrence h_t = f(h_{t-1}, x_t), t = 1..T, is a system of T equations in the unknown states.
Newton's method linearises f around the current guess h^k,

    h_t = f(h^k_{t-1}, x_t) + J_t (h_{t-1} - h^k_{t-1}),   J_t = df/dh (h^k_{t-1}, x_t),

which is a LINEAR recurrence h_t = J_t h_{t-1} + b_t: an associative scan solves it for all t at
once (`jax.lax.associative_scan` over affine maps (J_t, b_t), composed by matrix products), as a
convolution computes all positions at once. Each iteration makes at least one more step exact (h_1
is exact after the first), so T iterations always suffice; when the products of the J_t shrink
(contracting dynamics: the regime where gradients vanish) a few iterations reach float precision,
and when they grow (chaotic dynamics: exploding gradients) convergence is slow or breaks down.

  "deer"        full Jacobians J_t [H, H] (Lim et al. 2024, "Parallelizing non-linear sequential
                models over the sequence length"): quadratic convergence, O(T H^2) memory and
                O(T H^3) work per iteration.
  "quasi_deer"  only diag(J_t) (Gonzalez et al. 2024, "Towards scalable and stable
                parallelization of nonlinear RNNs"): O(T H) memory, the diagonal scan runs on the
                engines of `linear_scan` (impl "auto"); more, cheaper iterations. A cell's
                diagonal costs one or two forward-mode products (`StepWithDiagonal`).

Each iteration solves for the correction h^{k+1} - h^k, driven by the residual
f(h^k_{t-1}, x_t) - h^k_t (iterative refinement), so that float32 rounding in the scan's products
is relative to a correction that vanishes at convergence: the solution is as accurate as the
sequential scan's. Far from the solution the exact J_t can expand where the true trajectory
contracts (from the guess h = 0 at T = 1024 their products can overflow float32): the iterate
is then dropped and the iterations start again from h = 0 with bounded J_t until the residual is
small, then exact again (`damping`: the part ELK's Levenberg-Marquardt damping plays, at no
extra cost).

Each iteration's linear recurrence is solved all at once (`linear_solve="auto"`), or by
`lax.scan` through time (`"sequential"`): the same Newton iterates (up to rounding) for
O(T H^2) instead of O(T H^3) work per DEER iteration. That is no longer parallel in time, but it
is what a CPU wants when the question is how many iterations a network needs (the diagnostics'
solves of trained networks at T = 600-1000, `diagnostics/newton_points.py`).

Iterations run in a `lax.while_loop` until max |h^{k+1} - h^k| < tol or max_iters. The result
carries the iteration count and a converged flag, and is never silently unconverged: with
on_failure="fallback" an unconverged solve is replaced by the sequential scan (lax.cond), with
"error" a run raises (a host callback, so also under jit).

Gradients through the solution use the implicit function theorem (`jax.custom_vjp`): the adjoint
lambda_t = dL/dh_t + J_{t+1}^T lambda_{t+1} is one more linear recurrence, backwards in time,
solved by a reverse associative scan with the J_t^T (deer), or by quasi-Newton iterations whose
every step is one batched vector-Jacobian product over all t and one diagonal scan (quasi_deer);
then one batched VJP of f gives the gradients of the parameters, inputs and h_0.

A step function here is `step(params, h [B, H], x) -> h' [B, H]`, rows independent (a batch), x any
pytree of [B, ...] arrays. Masks and the probe's perturbations are folded into x by the caller.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice
from cnn_rnn.models.linear_scan import linear_scan
from cnn_rnn.models.rnn import damping
from cnn_rnn.models.rnn.scan import flat_step_diagonal

Array = jax.Array
Step = Callable[[Any, Array, Any], Array]
METHODS = ("deer", "quasi_deer")
ON_FAILURE = ("fallback", "error")
LINEAR_SOLVES = ("auto", "sequential")
DIAGONAL_GROUP_ELEMENTS = 1 << 24  # tangents held at once by `jacobians(diagonal=True)` (64 MB)


class Solution(NamedTuple):
    """States [T, B, H] of a solve, the Newton iterations used and whether they converged.

    `converged` is False when the states came from the sequential fallback instead.
    """

    states: Array
    iterations: Array
    converged: Array


class SolverOptions(NamedTuple):
    """Static options of `solve`: method, tol (max |dh|), max_iters, on_failure, linear_solve.

    linear_solve: "auto" solves each iteration's linear recurrence all at once (DEER's matrices
    by the associative scan, quasi-DEER's diagonals by `linear_scan`'s "auto" engine);
    "sequential" by `lax.scan` through time (the same iterates up to rounding; for DEER O(T H^2)
    work per iteration instead of the associative scan's O(T H^3), for quasi-DEER the same work).
    """

    method: str = "quasi_deer"
    tol: float = 1e-5
    max_iters: int = 100
    on_failure: str = "fallback"
    linear_solve: str = "auto"


def check_options(options: SolverOptions) -> None:
    """Raise ValueError on a bad option (method, on_failure, linear_solve, tol, max_iters)."""
    check_choice("method", options.method, METHODS)
    check_choice("on_failure", options.on_failure, ON_FAILURE)
    check_choice("linear_solve", options.linear_solve, LINEAR_SOLVES)
    if not (isinstance(options.tol, float | int) and options.tol > 0):
        raise ValueError(f"tol must be a number > 0, got {options.tol!r}")
    if not isinstance(options.max_iters, int) or options.max_iters < 1:
        raise ValueError(f"max_iters must be an integer >= 1, got {options.max_iters!r}")


def _over_time(step: Step, params: Any, h_prev: Array, xs: Any) -> Array:
    """Apply the step at every t at once: h_prev [T, B, H] -> [T, B, H]."""
    return jax.vmap(lambda h, x: step(params, h, x))(h_prev, xs)


def _shifted(states: Array, h0: Array) -> Array:
    """The previous state of every step: [h0, h_1, ..., h_{T-1}]."""
    return jnp.concatenate([h0[None], states[:-1]], axis=0)


@dataclasses.dataclass(frozen=True)
class StepWithDiagonal:
    """A step that also gives its Jacobian's diagonal directly (a cell's: `cell_step`).

    Attributes:
      step: f(params, h [B, H], x) -> h' [B, H].
      diagonal: d(params, h, x) -> diag(df/dh) [B, H], used by `jacobians(diagonal=True)`.

    """

    step: Step
    diagonal: Step

    def __call__(self, params: Any, h: Array, x: Any) -> Array:
        """Apply the step."""
        return self.step(params, h, x)


def jacobians(step: Step, params: Any, h_prev: Array, xs: Any, diagonal: bool) -> Array:
    """J_t = df/dh at (h_prev_t, x_t): [T, B, H, H], or only its diagonal [T, B, H].

    A `StepWithDiagonal` gives the diagonal itself (for a cell: one or two forward-mode
    products, see `scan.flat_step_diagonal`). For any other step it is built from H forward-mode
    products (one per basis vector, over all t and b at once), vectorised in groups small enough
    that a group's tangents hold at most DIAGONAL_GROUP_ELEMENTS numbers: the memory stays
    O(T B H) and the products run as batched matrix products instead of H dependent loop steps.
    """
    if diagonal and isinstance(step, StepWithDiagonal):
        return _over_time(step.diagonal, params, h_prev, xs)
    f = functools.partial(_over_time, step, params)
    if not diagonal:
        # One example at a time: rows are independent, so each Jacobian is [H, H].
        def single(h: Array, x: Any) -> Array:
            return step(params, h[None], jax.tree.map(lambda u: u[None], x))[0]

        return jax.vmap(jax.vmap(jax.jacfwd(single)))(h_prev, xs)
    hidden = h_prev.shape[-1]

    def diagonal_entry(i: Array) -> Array:  # dF_i/dh_i at every (t, b): [T, B]
        e = jax.nn.one_hot(i, hidden, dtype=h_prev.dtype)
        tangent = jax.jvp(lambda h: f(h, xs), (h_prev,), (jnp.broadcast_to(e, h_prev.shape),))[1]
        return jnp.take(tangent, i, axis=-1)

    group = max(1, min(hidden, DIAGONAL_GROUP_ELEMENTS // h_prev.size))
    entries = jax.lax.map(diagonal_entry, jnp.arange(hidden), batch_size=group)
    return jnp.moveaxis(entries, 0, -1)


def _affine_scan(a: Array, b: Array, diagonal: bool, reverse: bool = False,
                 linear_solve: str = "auto") -> Array:
    """All x_t = a_t x_{t-1} + b_t from x = 0 (x_{t+1} with reverse), time on axis 0.

    a is [T, B, H, H] (matrices) or [T, B, H] (diagonals); b is [T, B, H]. `linear_solve`: see
    `SolverOptions`.
    """
    flip = (lambda u: jnp.flip(u, axis=0)) if reverse else (lambda u: u)  # noqa: E731
    a, b = flip(a), flip(b)
    if linear_solve == "sequential":
        def advance(x: Array, ab: tuple[Array, Array]) -> tuple[Array, Array]:
            a_t, b_t = ab
            x = (a_t * x if diagonal else jnp.einsum("...ij,...j->...i", a_t, x)) + b_t
            return x, x

        return flip(jax.lax.scan(advance, jnp.zeros_like(b[0]), (a, b))[1])
    if diagonal:  # the linear-recurrence engines (impl "auto") want [B, T, H]
        return flip(jnp.swapaxes(linear_scan(jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)), 0, 1))

    def combine(left: tuple[Array, Array], right: tuple[Array, Array]) -> tuple[Array, Array]:
        a1, b1 = left
        a2, b2 = right
        return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, b1) + b2

    return flip(jax.lax.associative_scan(combine, (a, b), axis=0)[1])


def sequential_states(step: Step, params: Any, xs: Any, h0: Array) -> Array:
    """The reference: all states [T, B, H] by `lax.scan` through time."""
    return jax.lax.scan(lambda h, x: (step(params, h, x),) * 2, h0, xs)[1]


def newton(step: Step, params: Any, xs: Any, h0: Array,
           options: SolverOptions) -> tuple[Array, Array, Array]:
    """Newton iterations from h = 0; return (states [T, B, H], iterations, convergence measure).

    Each iteration solves for the CORRECTION d = h^{k+1} - h^k, d_t = J_t d_{t-1} + r_t with the
    residual r_t = f(h^k_{t-1}, x_t) - h^k_t (iterative refinement): the scan's float32 rounding
    is then relative to |d|, which vanishes at convergence, instead of to |h|; so the solution is
    as accurate as the sequential scan's even where products of the J_t amplify rounding. An
    iterate that overflows is dropped and the solve restarts from h = 0 with bounded J_t
    (`damping`); the measure is < tol only when an exact step's max |d| is.
    """
    diagonal = options.method == "quasi_deer"
    t = jax.tree.leaves(xs)[0].shape[0]
    h_init = jnp.zeros((t, *h0.shape), h0.dtype)

    def body(carry: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
        h, it, _, phase = carry
        h_prev = _shifted(h, h0)
        residual = _over_time(step, params, h_prev, xs) - h
        jac = damping.for_phase(phase, jacobians(step, params, h_prev, xs, diagonal), diagonal)
        # d_0 = 0 (h0 is given): step 1's correction is its residual, whatever J_1.
        d = _affine_scan(jac.at[0].set(0.0), residual, diagonal,
                         linear_solve=options.linear_solve)
        out = damping.advance(phase, _max_change(d, jnp.zeros_like(d)),
                              jnp.max(jnp.abs(residual)), options.tol)
        # A restart begins again from the guess: the last finite iterate can be wild (|h| ~ 1e20).
        return jnp.where(out.restart, h_init, h + d), it + 1, out.measure, out.phase

    h, it, measure, _ = jax.lax.while_loop(
        lambda carry: _iterating(options, carry[:3]), body,
        (h_init, jnp.int32(0), jnp.array(jnp.inf, h0.dtype), jnp.int32(damping.EXACT)))
    return h, it, measure


def _iterating(options: SolverOptions, carry: tuple[Array, Array, Array]) -> Array:
    """While-loop condition over (iterate, iterations, change): not converged, iterations left.

    A non-finite iterate (inf change, see _max_change) never recovers: stop and fall back.
    """
    _, it, delta = carry
    return (it < options.max_iters) & ~(delta < options.tol) & ((it == 0) | jnp.isfinite(delta))


def _max_change(new: Array, old: Array) -> Array:
    """Return max |new - old|, or inf if `new` has a non-finite entry.

    Explicit, because XLA:CPU's max-reduction can skip NaNs: an all-NaN iterate would otherwise
    read as a change of -inf, i.e. converged.
    """
    return jnp.where(jnp.all(jnp.isfinite(new)), jnp.max(jnp.abs(new - old)), jnp.inf)


def _raise_unconverged(converged: Any, iterations: Any, delta: Any, method: str) -> None:
    if not bool(converged):
        raise RuntimeError(f"{method}: Newton iterations did not converge ({int(iterations)} "
                           f"iterations, last max |dh| = {float(delta):.3g}); raise max_iters, "
                           f"or use on_failure='fallback' (the sequential scan)")


def _forward(step: Step, options: SolverOptions, params: Any, xs: Any,
             h0: Array) -> Solution:
    h, iterations, delta = newton(step, params, xs, h0, options)
    converged = delta < options.tol
    if options.on_failure == "error":
        jax.debug.callback(_raise_unconverged, converged, iterations, delta, options.method)
        return Solution(h, iterations, converged)
    h = jax.lax.cond(converged, lambda: h, lambda: sequential_states(step, params, xs, h0))
    return Solution(h, iterations, converged)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def solve(step: Step, options: SolverOptions, params: Any, xs: Any, h0: Array) -> Solution:
    """All states of h_t = step(params, h_{t-1}, x_t) by Newton iterations (see module doc).

    Args:
      step: the step function, rows independent (hashable: a function, not a fresh lambda per
        call, so that jit caches).
      options: `SolverOptions` (method, tol, max_iters, on_failure, linear_solve).
      params: any pytree the step reads (differentiated).
      xs: pytree of inputs [T, B, ...] (differentiated).
      h0: initial state [B, H] (differentiated).

    Returns:
      A `Solution`: states [T, B, H], iterations (int32) and converged (bool).

    """
    return _forward(step, options, params, xs, h0)


def _solve_fwd(step: Step, options: SolverOptions, params: Any, xs: Any,
               h0: Array) -> tuple[Solution, tuple[Any, ...]]:
    sol = _forward(step, options, params, xs, h0)
    return sol, (params, xs, h0, sol.states)


def _solve_bwd(step: Step, options: SolverOptions, res: tuple[Any, ...],
               cotangents: Solution) -> tuple[Any, Any, Array]:
    params, xs, h0, states = res
    g = cotangents.states
    h_prev = _shifted(states, h0)
    _, vjp = jax.vjp(functools.partial(_over_time, step), params, h_prev, xs)

    def later(u: Array) -> Array:  # u_{t+1} at t, zero after the last step
        return jnp.concatenate([u[1:], jnp.zeros_like(u[:1])], axis=0)

    if options.method == "deer":
        jac_t = jnp.swapaxes(jacobians(step, params, h_prev, xs, diagonal=False), -1, -2)
        lam = _affine_scan(later(jac_t), g, diagonal=False, reverse=True,
                           linear_solve=options.linear_solve)
    else:
        lam = _quasi_adjoint(step, params, xs, h_prev, g, vjp, later, options)
    d_params, d_h_prev, d_xs = vjp(lam)
    return d_params, d_xs, d_h_prev[0]


def _quasi_adjoint(step: Step, params: Any, xs: Any, h_prev: Array, g: Array,
                   vjp: Callable[[Array], tuple[Any, ...]], later: Callable[[Array], Array],
                   options: SolverOptions) -> Array:
    """Solve lambda_t = g_t + J_{t+1}^T lambda_{t+1} with diagonal-preconditioned iterations.

    lambda^{k+1}_t = g_t + D_{t+1} lambda^{k+1}_{t+1} + (J_{t+1}^T - D_{t+1}) lambda^k_{t+1},
    D = diag(J): each iteration is one batched VJP and one diagonal reverse scan, and makes at
    least one more step exact. Falls back to the sequential adjoint if it does not converge.
    """
    d_next = later(jacobians(step, params, h_prev, xs, diagonal=True))

    def body(carry: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        lam, it, _ = carry
        correction = later(vjp(lam)[1]) - d_next * later(lam)
        new = _affine_scan(d_next, g + correction, diagonal=True, reverse=True,
                           linear_solve=options.linear_solve)
        return new, it + 1, _max_change(new, lam) / (jnp.max(jnp.abs(new)) + 1e-30)

    lam, _, delta = jax.lax.while_loop(
        functools.partial(_iterating, options), body,
        (jnp.zeros_like(g), jnp.int32(0), jnp.array(jnp.inf, g.dtype)))

    def sequential() -> Array:
        def back(lam_next: Array, inp: tuple[Array, Any, Array]) -> tuple[Array, Array]:
            h, x, g_t = inp  # h is the previous state of step t+1, i.e. h_t
            lam_t = g_t + jax.vjp(lambda u: step(params, u, x), h)[1](lam_next)[0]
            return lam_t, lam_t

        # lambda_T = g_T; then lambda_t = g_t + J_{t+1}^T lambda_{t+1}, t = T-1 .. 1.
        xs_next = jax.tree.map(lambda u: u[1:], xs)
        _, lams = jax.lax.scan(back, g[-1], (h_prev[1:], xs_next, g[:-1]), reverse=True)
        return jnp.concatenate([lams, g[-1:]], axis=0)

    return jax.lax.cond(delta < options.tol, lambda: lam, sequential)


solve.defvjp(_solve_fwd, _solve_bwd)


def cell_step(flat: Step, cell: Any) -> Step:
    """The layer's step on flat states: x = (x_t, mask_t, perturbation_t), as `run_cell` does.

    On padded steps (mask False) the state is kept; the perturbation is added to the hidden part
    of the state after each valid step (the gradient-flow probe's hook).
    """
    def step(params: Any, state: Array, inp: tuple[Array, Array, Array | None]) -> Array:
        x, m, p = inp
        new = flat(params, state, x)
        if p is not None:
            carry = cell.from_flat(new)
            new = cell.to_flat(cell.with_hidden(carry, cell.hidden_of(carry) + p))
        return jnp.where(m[:, None], new, state)

    flat_diagonal = flat_step_diagonal(cell)

    def diagonal(params: Any, state: Array, inp: tuple[Array, Array, Array | None]) -> Array:
        x, m, _ = inp  # the perturbation is an added constant: no term of its own
        return jnp.where(m[:, None], flat_diagonal(params, state, x), 1.0)

    return StepWithDiagonal(step, diagonal)


def run_cell_newton(flat: Step, cell: Any, params: Any, xs: Array, mask: Array | None,
                    perturbation: Array | None, options: SolverOptions
                    ) -> tuple[Array, Array, Solution]:
    """Run a cell over time-major inputs xs [T, B, D] by a Newton solve (all steps at once).

    Returns the hidden states [T, B, H] (zero on padded steps, as `run_cell`), the hidden state
    after the last valid step [B, H] and the `Solution` (iterations, converged).
    """
    t, batch = xs.shape[:2]
    m = jnp.ones((t, batch), bool) if mask is None else mask
    h0 = cell.to_flat(cell.initialize_carry(None, (batch, 1), xs.dtype))
    sol = solve(cell_step(flat, cell), options, params, (xs, m, perturbation), h0)
    hidden = cell.hidden_of(cell.from_flat(sol.states))
    return jnp.where(m[..., None], hidden, 0.0), hidden[-1], sol
