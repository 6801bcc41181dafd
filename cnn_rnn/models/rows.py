"""Position-wise products over a sequence [B, T, D] as ONE 2-D matmul over its B*T rows.

The same weights act on every position of a sequence (the input projection of an RNN, the
LRU's B and C, a Transformer's MLP). Written as `x @ w` on x [B, T, D], the weight gradient is a
dot that contracts the two leading axes, which XLA:CPU lowers as a transposing copy plus a dot:
slower than the same product on x reshaped to [B*T, D] (the LRU block's training step at T=1024
went from 116 to 105 ms: docs/benchmarks/linear_scan.md). Flattening costs nothing (a reshape
of a contiguous array) and gives the same numbers.
"""

from __future__ import annotations

import flax.linen as nn
import jax

Array = jax.Array


def matmul_rows(x: Array, w: Array) -> Array:
    """Return x [..., D] @ w [D, F] computed as one [rows, D] @ [D, F] product; returns [..., F]."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


class Dense(nn.Dense):
    """`flax.linen.Dense` computed on the inputs' rows (same parameters, names and numbers)."""

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Return Dense(inputs) [..., features] for inputs [..., D]."""
        y = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return y.reshape(*inputs.shape[:-1], self.features)
