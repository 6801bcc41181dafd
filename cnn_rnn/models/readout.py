"""Many-to-one readouts shared by the sequence models: the last valid step or the masked mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp

POOLS = ("mean", "last")


def last_valid_step(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """x[b, t_b] for x [B, T, D], t_b the last step where mask[b] is True (T-1 without a mask).

    Many-to-one readout for variable-length batches: the output at the end of each real sequence,
    not at the end of the padding.
    """
    if mask is None:
        return x[:, -1]
    t = x.shape[1]
    last = t - 1 - jnp.argmax(mask[:, ::-1], axis=1)
    return x[jnp.arange(x.shape[0]), last]


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of x [B, T, D] over the steps where mask [B, T] is True (all steps without a mask)."""
    if mask is None:
        return jnp.mean(x, axis=1)
    m = mask[..., None].astype(x.dtype)
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def pool_sequence(x: jax.Array, mask: jax.Array | None, pool: str) -> jax.Array:
    """Reduce [B, T, D] to [B, D] with `pool` in POOLS."""
    if pool == "mean":
        return masked_mean(x, mask)
    if pool == "last":
        return last_valid_step(x, mask)
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
