"""Engines for the diagonal linear recurrence h_t = a_t * h_{t-1} + b_t (all t at once).

Two consecutive steps compose into one step of the same form,

    (a1, b1) then (a2, b2)  =  (a2 * a1,  a2 * b1 + b2),

and this operator is associative, so the T states can be computed in several orders that give
the same numbers (up to rounding):

  "sequential"   `jax.lax.scan` over time: T dependent steps, the reference.
  "associative"  `jax.lax.associative_scan`: O(log T) depth but O(T log T)-ish work, with
                 strided (odd/even) slices that a CPU streams slowly. Wins where there is
                 parallel hardware to fill.
  "chunked"      split time into chunks of C steps; a `lax.scan` over the C positions runs all
                 chunks at once (each step one dense elementwise product over [B, T/C, N]),
                 giving every chunk's cumulative decay and its state from a zero start; then a
                 short sequential scan over the T/C chunk boundaries carries the state across
                 chunks, and one dense pass adds carry * (cumulative decay) to every step.
                 About C + T/C dependent steps instead of T, each larger: less loop overhead.
  "auto"         "sequential" on CPU and "associative" on accelerators. On this project's 2-core
                 CPU neither parallel engine beat the sequential scan (docs/benchmarks/
                 linear_scan.md, T=1024: forward + backward of the chunked engine 1.6-1.9x the
                 sequential one's time, the associative one 0.87-1.12x): with two cores there
                 is little parallel hardware to fill, and each of their passes over [B, T, N]
                 costs about what the loop's per-step overhead does. On a GPU/TPU the
                 associative scan's O(log T) depth fills the device (not measured here: no GPU).
  "parallel"     the former name of "associative" (kept so that older configs still run).

Coefficients are real arrays or complex ones given as (real, imag) pairs of real arrays (XLA:CPU
differentiates real arithmetic much faster than complex64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice

Array = jax.Array
Coeffs = Array | tuple[Array, Array]  # a real array, or a complex one as (real, imag) arrays
IMPLS = ("auto", "associative", "chunked", "sequential", "parallel")
DEFAULT_CHUNK = 32


def mul(x: Coeffs, y: Coeffs) -> Coeffs:
    """Elementwise product; (real, imag) pairs multiply as complex numbers."""
    if isinstance(x, tuple):
        return x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0]
    return x * y


def add(x: Coeffs, y: Coeffs) -> Coeffs:
    """Elementwise sum of arrays or of (real, imag) pairs."""
    return jax.tree.map(jnp.add, x, y)


def combine(left: tuple[Coeffs, Coeffs], right: tuple[Coeffs, Coeffs]) -> tuple[Coeffs, Coeffs]:
    """Compose two linear steps: apply `left` first, then `right`."""
    a1, b1 = left
    a2, b2 = right
    return mul(a2, a1), add(mul(a2, b1), b2)


def resolve_impl(impl: str) -> str:
    """Return the engine `impl` names on this backend ("auto", "parallel" resolved)."""
    check_choice("impl", impl, IMPLS)
    if impl == "parallel":
        return "associative"
    if impl == "auto":  # see the module docstring for the measurements behind this choice
        return "sequential" if jax.default_backend() == "cpu" else "associative"
    return impl


def _fill(a: Coeffs, one: float) -> Coeffs:
    """Per-leaf fill value of the identity coefficient (1, or (1, 0) for complex pairs)."""
    return (one, 0.0) if isinstance(a, tuple) else one


def _within_chunks(a: Coeffs, b: Coeffs) -> tuple[Coeffs, Coeffs]:
    """Cumulative decays and zero-start states inside every chunk, for a, b [B, n, C, ...].

    A `lax.scan` over the C positions of a chunk whose every step is one dense elementwise
    product over all n chunks at once ([B, n, ...] arrays): C dependent steps instead of T.
    """
    inner = lambda tree: jax.tree.map(lambda u: jnp.moveaxis(u, 2, 0), tree)  # noqa: E731
    outer = lambda tree: jax.tree.map(lambda u: jnp.moveaxis(u, 0, 2), tree)  # noqa: E731

    def step(carry: tuple[Coeffs, Coeffs], ab: tuple[Coeffs, Coeffs]
             ) -> tuple[tuple[Coeffs, Coeffs], tuple[Coeffs, Coeffs]]:
        carry = combine(carry, ab)
        return carry, carry

    a, b = inner((a, b))
    first = jax.tree.map(lambda u: u[0], (a, b))
    rest = jax.tree.map(lambda u: u[1:], (a, b))
    _, (a_cum, h) = jax.lax.scan(step, first, rest)
    cat = lambda f, r: jnp.concatenate([f[None], r], axis=0)  # noqa: E731
    return outer((jax.tree.map(cat, first[0], a_cum), jax.tree.map(cat, first[1], h)))


def _sequential(a: Coeffs, b: Coeffs, h0: Coeffs) -> Coeffs:
    """States of the recurrence by `lax.scan` over axis 1 of [B, T, ...] coefficients."""

    def step(h: Coeffs, ab: tuple[Coeffs, Coeffs]) -> tuple[Coeffs, Coeffs]:
        h = add(mul(ab[0], h), ab[1])
        return h, h

    time_major = lambda tree: jax.tree.map(lambda u: jnp.swapaxes(u, 0, 1), tree)  # noqa: E731
    _, hs = jax.lax.scan(step, h0, time_major((a, b)))
    return time_major(hs)


def chunked_scan(a: Coeffs, b: Coeffs, chunk: int = DEFAULT_CHUNK) -> Coeffs:
    """All states of h_t = a_t * h_{t-1} + b_t, h_{-1} = 0, for a, b [B, T, ...], by chunks.

    T is padded to a multiple of `chunk` with identity steps (a = 1, b = 0) that change nothing.
    """
    lead = jax.tree.leaves(b)[0]
    batch, t = lead.shape[:2]
    c = max(1, min(chunk, t))
    pad = -t % c
    if pad:
        widths = [(0, 0), (0, pad)] + [(0, 0)] * (lead.ndim - 2)
        a = jax.tree.map(lambda u, f: jnp.pad(u, widths, constant_values=f), a, _fill(a, 1.0))
        b = jax.tree.map(lambda u: jnp.pad(u, widths), b)
    chunks = lambda u: u.reshape(batch, (t + pad) // c, c, *u.shape[2:])  # noqa: E731
    a, b = jax.tree.map(chunks, (a, b))
    # Within chunks: cumulative decay a_cum and the state reached from a zero start.
    a_cum, h_local = _within_chunks(a, b)
    # Across chunks: the state entering each chunk (sequential, T/C steps).
    a_last, b_last = jax.tree.map(lambda u: u[:, :, -1], (a_cum, h_local))
    h0 = jax.tree.map(lambda u: jnp.zeros_like(u[:, 0]), b_last)
    h_end = _sequential(a_last, b_last, h0)
    h_in = jax.tree.map(lambda e, z: jnp.concatenate([z[:, None], e[:, :-1]], axis=1), h_end, h0)
    h = add(h_local, mul(a_cum, jax.tree.map(lambda u: u[:, :, None], h_in)))
    return jax.tree.map(lambda u: u.reshape(batch, t + pad, *u.shape[3:])[:, :t], h)


def conj(x: Coeffs) -> Coeffs:
    """Complex conjugate of a (real, imag) pair; a real array unchanged."""
    return (x[0], -x[1]) if isinstance(x, tuple) else x


def _time_shift(x: Coeffs, d: int) -> Coeffs:
    """Move x |d| steps along axis 1 (later if d > 0, earlier if d < 0), filling zeros."""
    def shift(u: Array) -> Array:
        zeros = jnp.zeros_like(u[:, :abs(d)])
        return (jnp.concatenate([zeros, u[:, :-d]], axis=1) if d > 0
                else jnp.concatenate([u[:, -d:], zeros], axis=1))
    return jax.tree.map(shift, x)


def _run(impl: str, chunk: int, a: Coeffs, b: Coeffs) -> Coeffs:
    if impl == "associative":
        return jax.lax.associative_scan(combine, (a, b), axis=1)[1]
    if impl == "chunked":
        return chunked_scan(a, b, chunk)
    return _sequential(a, b, jax.tree.map(lambda u: jnp.zeros_like(u[:, 0]), b))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _states(impl: str, chunk: int, a: Coeffs, b: Coeffs) -> Coeffs:
    return _run(impl, chunk, a, b)


def _states_fwd(impl: str, chunk: int, a: Coeffs, b: Coeffs) -> tuple[Coeffs, tuple]:
    h = _run(impl, chunk, a, b)
    return h, (a, h)


def _states_bwd(impl: str, chunk: int, res: tuple, g: Coeffs) -> tuple[Coeffs, Coeffs]:
    """The adjoint is the same recurrence backwards in time, run by the same engine.

    With h_t = a_t h_{t-1} + b_t: dL/db_t = g_t + conj(a_{t+1}) dL/db_{t+1} and
    dL/da_t = conj(h_{t-1}) dL/db_t (conj for the complex pairs: JAX's cotangent convention).
    """
    a, h = res
    flip = lambda tree: jax.tree.map(lambda u: jnp.flip(u, axis=1), tree)  # noqa: E731
    d_b = flip(_run(impl, chunk, flip(conj(_time_shift(a, -1))), flip(g)))
    return mul(conj(_time_shift(h, 1)), d_b), d_b


_states.defvjp(_states_fwd, _states_bwd)


def linear_scan(a: Coeffs, b: Coeffs, impl: str = "auto", chunk: int = DEFAULT_CHUNK) -> Coeffs:
    """All states of h_t = a_t * h_{t-1} + b_t with h_{-1} = 0, for a, b [B, T, N].

    Differentiable with a custom backward pass: one more scan of the same engine, backwards in
    time (no stored intermediate of the engine).

    Args:
      a: decays, a real array or a (real, imag) pair; broadcast to b's shape (e.g. a constant
        LRU lambda [N]).
      b: inputs [B, T, N], of the same kind as `a`.
      impl: one of IMPLS (see the module docstring); all give the same states.
      chunk: chunk length of impl="chunked".

    Returns:
      The states [B, T, N] (a (real, imag) pair for complex coefficients).

    """
    impl = resolve_impl(impl)
    a = jax.tree.map(lambda u, v: jnp.broadcast_to(u, v.shape), a, b)
    return _states(impl, chunk, a, b)
