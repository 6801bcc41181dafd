"""Initialisers of the fused recurrent matrix W_h [H, G*H]: one [H, H] block per gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice

Array = jax.Array
Initializer = Callable[..., Array]

RECURRENT_INITS = ("default", "orthogonal", "identity")


def gate_blocks(w: Array, num_gates: int) -> tuple[Array, ...]:
    """Split a fused [..., G*H] array into its G gate blocks [..., H]."""
    return tuple(jnp.split(w, num_gates, axis=-1))


def recurrent_initializer(kind: str, num_gates: int, scale: float = 1.0) -> Initializer:
    """Return an initializer for a fused W_h [H, G*H] that fills each gate's [H, H] block apart.

    kind: "default" (lecun normal, variance 1/H), "orthogonal" (Saxe et al. 2014; keeps the norm of
    h through the linear part of a step) or "identity" (scale * I, the IRNN of Le et al. 2015: with
    ReLU the state is copied forward and gradients neither vanish nor explode at initialisation).
    """
    check_choice("model.recurrent_init", kind, RECURRENT_INITS)
    if kind == "identity":
        block = lambda key, shape, dtype: scale * jnp.eye(shape[0], shape[1], dtype=dtype)  # noqa: E731
    elif kind == "orthogonal":
        block = nn.initializers.orthogonal(scale)
    else:
        block = nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")

    def init(key: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
        h = shape[1] // num_gates
        keys = jax.random.split(key, num_gates)
        return jnp.concatenate([block(k, (shape[0], h), dtype) for k in keys], axis=1)

    return init
