"""Damping of the Newton solvers (`parallel_in_time`) where the exact Jacobians overflow.

Newton's iterations start from the guess h = 0, where the exact J_t = df/dh can expand although
the true trajectory contracts (tanh'(0) = 1: with recurrent weights of norm ~2 their products
over T = 1024 steps overflow float32, and the first iterate is non-finite). A solve then goes
through three phases:

  EXACT    exact J_t from h = 0: quadratic convergence near the solution. A non-finite iterate
           is dropped, and the iterations start again from h = 0 (the last finite iterate can
           be wild: |h| ~ 1e20 on an LSTM at T = 1024) in
  DAMPED   with `bounded` J_t (norm <= 1): their products cannot overflow, and Newton's fixed
           point is the true trajectory for ANY approximation of the J_t, so this is a stable
           quasi-Newton step (linear convergence), still exact wherever |J_t| <= 1, i.e. where
           the dynamics contract. A small step proves nothing here; once the residual
           max |h_t - f(h_{t-1}, x_t)| < tol, on to
  REFINED  exact J_t again, from near the solution: only an exact step with max |dh| < tol
           converges. A non-finite iterate now means the J_t overflow along the solution itself
           (the dynamics expand): the solve stops unconverged (the caller falls back or raises).

This takes the part of the damping of ELK (Gonzalez et al. 2024, "Towards scalable and stable
parallelization of nonlinear RNNs": Levenberg-Marquardt steps computed by a parallel Kalman
smoother) at no extra cost per iteration. Damped steps converge linearly, so a solve that needs
them takes more iterations than an exact one would without overflow: tanh-RNN, W_h x 2,
T = 1024: 316 (exact DEER in float64, which does not overflow there: 312); LSTM at its init on
adding, T = 1024: 72, where before this restart a lucky finite (|h| ~ 1e20) iterate went on to
converge in 13 (docs/parallel_in_time/report.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
EXACT, DAMPED, REFINED = 0, 1, 2


def bounded(jac: Array, diagonal: bool) -> Array:
    """Jacobians scaled to norm <= 1: diagonals clipped to [-1, 1], matrices J / max(1, |J|_F)."""
    if diagonal:
        return jnp.clip(jac, -1.0, 1.0)
    norm = jnp.sqrt(jnp.sum(jac * jac, axis=(-2, -1), keepdims=True))
    return jac / jnp.maximum(norm, 1.0)


def for_phase(phase: Array, jac: Array, diagonal: bool) -> Array:
    """The Jacobians a step of `phase` uses: `bounded` in DAMPED, exact otherwise."""
    return jax.lax.cond(phase == DAMPED, lambda j: bounded(j, diagonal), lambda j: j, jac)


class Outcome(NamedTuple):
    """What a step decides: drop its iterate (restart), the convergence measure, the next phase."""

    restart: Array
    measure: Array
    phase: Array


def advance(phase: Array, change: Array, residual: Array, tol: float) -> Outcome:
    """Decide after a step of `phase` with max |dh| = change (inf if non-finite).

    residual is max |h_t - f(h_{t-1}, x_t)| of the iterate the step started from. The measure
    converges (< tol) only for a finite exact step under tol; it is inf (stop) for a non-finite
    step in DAMPED or REFINED, and the float maximum (go on) for the dropped EXACT one.
    """
    restart = ~jnp.isfinite(change) & (phase == EXACT)
    measure = jnp.where(phase == DAMPED, jnp.maximum(change, tol), change)
    measure = jnp.where(restart, jnp.finfo(change.dtype).max, measure)
    phase = jnp.where(restart, DAMPED, phase)
    phase = jnp.where((phase == DAMPED) & (residual < tol), REFINED, phase)
    return Outcome(restart, measure, phase)
