"""PyTorch's default initialisation, for models that follow reference code written in PyTorch.

`nn.Linear` and `nn.Conv1d` start their weights with `kaiming_uniform_(a=sqrt(5))` and their
biases uniformly, both bounded by the layer's fan-in (inputs x taps):
    W ~ U(-b, b),  bias ~ U(-b, b),  b = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
with gain = sqrt(2 / (1 + a^2)) = sqrt(1 / 3). Flax's defaults differ (LeCun normal weights,
zero biases), which matters when a paper's number depends on where training starts.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = nn.initializers.Initializer


def uniform(bound: float) -> Initializer:
    """U(-bound, bound) of any shape."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def kernel() -> Initializer:
    """PyTorch's default weight init, U(+-1/sqrt(fan_in)), for flax kernels [..., in, out]."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init for a layer with `fan_in` inputs (x taps)."""
    return uniform(1.0 / math.sqrt(fan_in))


def layer(fan_in: int) -> dict[str, Initializer]:
    """`kernel_init` and `bias_init` of a PyTorch layer with `fan_in` inputs x taps."""
    return dict(kernel_init=kernel(), bias_init=bias(fan_in))


# ||W|| of one output unit under `kernel()`: E||W||^2 = fan_in * b^2 / 3 = 1/3 for any fan-in. A
# torch weight-normed layer starts its gain at ||V||, so its weights start as `kernel()` drew them;
# flax's WeightNorm gain starts at a constant, and this one gives the same norm in expectation.
KERNEL_NORM = math.sqrt(1.0 / 3.0)
