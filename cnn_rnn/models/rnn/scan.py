"""Engines that run a cell over time: the sequential scan and what makes it fast and small.

`run_cell` is the one `jax.lax.scan` every cell runs under (backpropagation through time is
autodiff through it), with options that change speed and memory but not values: per-step or
hoisted input projection, rematerialisation per step or per segment (`scan_in_segments`),
independent batch groups per step (`split_batch`), and a custom backward pass for the plain Elman
RNN (`elman_scan`). The `resolve_*` functions turn "auto" into a choice for the backend.
`flat_step` gives a cell's step as a pure function of a flat state, for parallel-in-time solvers,
and `flat_step_diagonal` the diagonal of its Jacobian (for quasi-DEER) in one or two products.
Why each "auto" choice is what it is, with the CPU measurements: docs/performance_notes.md.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int
from cnn_rnn.models.rnn.cells import ACTIVATIONS, Carry, ElmanCell, Gates, RecurrentCell, Weights

Array = jax.Array
Body = Callable[[Carry, Any], tuple[Carry, Array]]

INPUT_PROJECTIONS = ("auto", "hoisted", "per_step")
REMATS = ("auto", "none", "step", "segments")  # also accepted: True (= "step"), False (= "none")
MIN_GROUP_BATCH = 32  # below this many sequences per group, splitting measured slower


def flat_step(cell: RecurrentCell) -> Callable[[Mapping[str, Array], Array, Array], Array]:
    """Return f(params, s_{t-1}, x_t) = s_t, the cell's step on flat states [..., state_size].

    `params` is the cell's own parameter dict ({"W_x", "W_h", "b", ...}, e.g.
    `variables["params"]["layer0_fwd"]`), x_t [..., D] a raw input. Pure and differentiable, so
    a parallel-in-time solver can take its Jacobian with respect to s (jax.jacfwd / jvp).
    """
    def f(params: Mapping[str, Array], state: Array, x: Array) -> Array:
        carry = cell.step_input(cell.unpack(params), cell.from_flat(state), x)
        return cell.to_flat(carry)

    return f


@jax.custom_jvp
def _diagonal_tangent_product(h: Array, w: Array) -> Array:
    return h @ w


@_diagonal_tangent_product.defjvp
def _diagonal_tangent_product_jvp(primals: tuple[Array, Array],
                                  tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    h, w = primals
    return h @ w, tangents[0] * jnp.diagonal(w)  # d(h @ w)_i / dh_i only; w held fixed


class _DiagonalTangent:
    """Stand-in for a recurrent block W in a step: `h @ W` with a diagonal-only tangent.

    The product's value is the usual one; its tangent in h is h_dot * diag(W), the diagonal of
    the product's Jacobian.
    """

    def __init__(self, w: Array) -> None:
        self.w = w

    def __rmatmul__(self, h: Array) -> Array:
        return _diagonal_tangent_product(h, self.w)


def flat_step_diagonal(cell: RecurrentCell) -> Callable[[Mapping[str, Array], Array, Array], Array]:
    """Return d(params, s_{t-1}, x_t) = diag(ds_t/ds_{t-1}) [..., state_size] of `flat_step`.

    A step depends on h_{t-1} through the products h @ W_h^k and through elementwise operations
    (gates, f * c, z * h). Its Jacobian's diagonal therefore needs only each product's diagonal
    diag(W_h^k): with the W_h^k blocks replaced by stand-ins whose product has exactly that
    tangent, ONE forward-mode product per carry leaf gives the diagonal (two for the LSTM's
    (c, h): a tangent of ones on both would add the cross terms dc_t/dh_{t-1}), where the generic
    way takes state_size products. It relies on the cell writing its recurrent products as
    `h @ w` with w from weights["W_h"] (every cell here does). Were some other product of h left
    full, the result would include off-diagonal terms: an approximation quasi-Newton solvers
    tolerate (they converge to the same states, with more iterations).
    """
    def d(params: Mapping[str, Array], state: Array, x: Array) -> Array:
        weights = cell.unpack(params)
        xp = cell.project(weights, x)
        weights = {**weights, "W_h": tuple(_DiagonalTangent(w) for w in weights["W_h"])}

        def f(s: Array) -> Array:
            return cell.to_flat(cell.step(weights, cell.from_flat(s), xp))

        leaves, treedef = jax.tree.flatten(cell.from_flat(state))
        f_jvp = jax.linearize(f, state)[1]  # the step evaluated once for every leaf's product
        diag = []
        for k in range(len(leaves)):  # a tangent of ones on carry leaf k, zeros on the others
            tangent = cell.to_flat(jax.tree.unflatten(
                treedef, [jnp.full_like(u, j == k) for j, u in enumerate(leaves)]))
            diag.append(jnp.split(f_jvp(tangent), len(leaves), axis=-1)[k])
        return jnp.concatenate(diag, axis=-1)

    return d


def run_cell(cell: RecurrentCell, weights: Weights, xs: Gates | Array,
             mask: Array | None = None, perturbation: Array | None = None, *,
             projected: bool = True, unroll: int = 1, remat: bool | str = "none",
             segment: int | None = None, batch_groups: int = 1) -> tuple[Carry, Array]:
    """Run `cell` over a time-major sequence with `jax.lax.scan` (the loop of every cell).

    Args:
      cell: a cell (its `project` and `step` are pure).
      weights: what `cell.weights(D)` returned.
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
    check_choice("model.remat", remat, REMATS[1:])

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
    if (type(cell) is ElmanCell and not projected and mask is None and perturbation is None
            and remat == "none" and unroll == 1 and batch_groups == 1):
        hs = elman_scan(cell.activation, weights["W_x"][0], weights["b"][0], weights["W_h"][0],
                        xs)
        return hs[-1], hs
    if remat == "step":
        body = jax.checkpoint(body, prevent_cse=False)
    first = jax.tree.leaves(xs)[0]
    carry0 = cell.initialize_carry(None, first.shape[1:2] + (1,), first.dtype)
    inputs = (xs, mask, perturbation)
    if remat == "segments":
        return scan_in_segments(body, carry0, inputs, segment, unroll)
    return jax.lax.scan(body, carry0, inputs, unroll=unroll)


def split_batch(body: Body, groups: int) -> Body:
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
    accumulating them step by step. Used by `run_cell` when nothing else (mask, perturbation,
    remat, unroll) is asked for.
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


def scan_in_segments(body: Body, carry0: Carry, inputs: Any, segment: int | None = None,
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
        check_int("model.remat_segment", segment, 1)
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
    cheaper than streaming its stored activations back, and "none" elsewhere.
    """
    remat = {True: "step", False: "none"}.get(remat, remat)
    check_choice("model.remat", remat, REMATS)
    if remat == "auto":
        return "step" if num_gates > 1 and jax.default_backend() == "cpu" else "none"
    return remat


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
    check_choice("model.input_projection", mode, INPUT_PROJECTIONS)
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
