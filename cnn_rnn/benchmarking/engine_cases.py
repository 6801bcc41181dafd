"""Benchmark cases of a linear-recurrence scan engine alone: impl "engine".

The row times forward and backward of `linear_scan.linear_scan(a, b, impl)` on the coefficients
of one LRU or minGRU layer ([B, T, H]; the LRU's a constant complex lambda [H] as (real, imag)
pairs, the minGRU's a per-step gate in (0, 1)), where the model rows time a whole training step
around it. Their difference is what the rest of the layer costs, which bounds what any engine can
gain on the model's step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_rnn.benchmarking import timing
from cnn_rnn.benchmarking.case import Case, Prepared
from cnn_rnn.models.linear_scan import linear_scan


def coefficients(model: str, shape: tuple[int, int, int], key: jax.Array) -> tuple:
    """Random (a, b) of the recurrence of `model` ("lru" or "mingru") for states [B, T, H]."""
    k_a, k_b, k_c = jax.random.split(key, 3)
    if model == "lru":
        modulus = jax.random.uniform(k_a, shape[-1:], minval=0.5, maxval=0.99)
        phase = jax.random.uniform(k_c, shape[-1:], maxval=2 * jnp.pi)
        b = jax.random.normal(k_b, (2, *shape))
        return (modulus * jnp.cos(phase), modulus * jnp.sin(phase)), (b[0], b[1])
    return jax.nn.sigmoid(jax.random.normal(k_a, shape)), jax.random.normal(k_b, shape)


def prepare_engine(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Compile forward + backward of the scan engine `case.options["impl"]` on the case's shape.

    `learning_rate` is unused (no optimizer): the signature is that of the other impls.
    """
    engine = case.options.get("impl", "auto")
    a, b = coefficients(case.model, (case.batch, case.seq_len, case.hidden),
                        jax.random.key(seed))
    cotangent = jax.tree.map(jnp.ones_like, b)

    def loss(a: tuple, b: tuple) -> jax.Array:
        h = linear_scan(a, b, engine)
        return sum(jnp.vdot(g, u) for g, u in zip(jax.tree.leaves(cotangent),
                                                   jax.tree.leaves(h), strict=True))

    fn = jax.value_and_grad(loss, argnums=(0, 1))
    compiled, compile_s = timing.compile_timed(fn, a, b)

    def step() -> None:
        jax.block_until_ready(compiled(a, b))

    params = sum(u.size for u in jax.tree.leaves(a)) if case.model == "lru" else 0
    return Prepared(step, compile_s, timing.peak_bytes(compiled), params,
                    notes=f"{engine} scan engine, forward + backward")
