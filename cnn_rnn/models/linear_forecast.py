"""The linear forecasters that anchor the long-horizon benchmark (Zeng et al., AAAI 2023).

Each maps a window x [B, L, C] to the next H steps [B, H, C] with one linear map over TIME,
x_hat[:, :, c] = W^T x[:, :, c] + b (W [L, H], shared by every variable c unless `individual`, then
one W per variable), and returns them flattened step-major [B, H*C] (the timeseries source's target
layout), with H = num_outputs / C:
  linear    the map alone.
  nlinear   last-value normalisation: subtract the window's last value x_L, map, add it back.
  dlinear   decomposition: trend = moving average of x (kernel 25, the ends replicate-padded by
            (k-1)/2 copies of the first and last value, as in the reference code), seasonal =
            x - trend; one map for each, summed.
Initialisation follows the reference (PyTorch): biases and linear/nlinear weights uniform in
+-1/sqrt(L) (nn.Linear's default); DLinear's two weights start at 1/L (the window mean).
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_int
from cnn_rnn.errors import ConfigError
from cnn_rnn.models import torch_init
from cnn_rnn.models.registry import register_model


def moving_average(x: jax.Array, kernel_size: int) -> jax.Array:
    """Mean over `kernel_size` steps around each step of x [B, L, C], ends replicate-padded."""
    pad = (kernel_size - 1) // 2
    padded = jnp.concatenate([jnp.repeat(x[:, :1], pad, axis=1), x,
                              jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
    return nn.avg_pool(padded, (kernel_size,), strides=(1,), padding="VALID")


class TimeLinear(nn.Module):
    """x [B, L, C] -> [B, H, C]: one linear map over the time axis, per variable.

    Attributes:
      horizon: H, the steps forecast.
      individual: one map per variable (else one shared by all).
      mean_init: start the weights at 1/L (DLinear) instead of U(+-1/sqrt(L)).

    """

    horizon: int
    individual: bool = False
    mean_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the map to every variable of x [B, L, C]."""
        length, channels = x.shape[-2:]
        bound = 1.0 / math.sqrt(length)
        lead = (channels,) if self.individual else ()
        w_init = (nn.initializers.constant(1.0 / length) if self.mean_init
                  else torch_init.uniform(bound))
        w = self.param("kernel", w_init, (*lead, length, self.horizon))
        b = self.param("bias", torch_init.bias(length), (*lead, self.horizon))
        if self.individual:
            return jnp.einsum("blc,clh->bhc", x, w) + b.T
        return jnp.einsum("blc,lh->bhc", x, w) + b[:, None]


def _horizon(num_outputs: int, inputs: jax.Array, mask: jax.Array | None, name: str) -> int:
    """H = num_outputs / C, refusing what these fixed-window models cannot take."""
    if mask is not None:
        raise ConfigError("model.name", f"{name!r} forecasts from fixed-length windows and takes "
                          "no mask; accepted: a task without variable-length sequences")
    channels = inputs.shape[-1]
    if num_outputs % channels:
        raise ConfigError("model.name", f"{name!r} forecasts every input variable: num_outputs "
                          f"{num_outputs} is not a multiple of the {channels} input variables")
    return num_outputs // channels


def _flat(y: jax.Array) -> jax.Array:
    """[B, H, C] -> [B, H*C], step-major (step t's variables, then t+1's)."""
    return y.reshape(y.shape[0], -1)


@register_model("linear")
class Linear(nn.Module):
    """One linear map over time: x_hat = W^T x + b (Zeng et al.'s "Linear").

    Attributes:
      num_outputs: horizon x variables (set from the task).
      individual: one map per variable instead of one shared.

    """

    num_outputs: int
    individual: bool = False
    subtract_last: ClassVar[bool] = False  # NLinear's normalisation

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Forecast [B, H*C] from windows [B, L, C]."""
        horizon = _horizon(self.num_outputs, inputs, mask, type(self).__name__.lower())
        last = inputs[:, -1:, :] if self.subtract_last else 0.0
        return _flat(TimeLinear(horizon, self.individual)(inputs - last) + last)


@register_model("nlinear")
class NLinear(Linear):
    """Linear on the window minus its last value, which is added back to the forecast.

    Attributes:
      num_outputs: horizon x variables (set from the task).
      individual: one map per variable instead of one shared.

    """

    subtract_last: ClassVar[bool] = True


@register_model("dlinear")
class DLinear(nn.Module):
    """Linear maps of the moving-average trend and of the remainder (seasonal), summed.

    Attributes:
      num_outputs: horizon x variables (set from the task).
      kernel_size: steps of the moving average (odd, so the trend keeps the window's length).
      individual: one pair of maps per variable instead of one shared pair.

    """

    num_outputs: int
    kernel_size: int = 25
    individual: bool = False

    def __post_init__(self):
        # Validate at construction, so build_model reports a bad value as a ConfigError.
        if check_int("model.kernel_size", self.kernel_size, 1) % 2 == 0:
            raise ConfigError("model.kernel_size", f"{self.kernel_size} is even: the trend would "
                              "be one step shorter than the window; accepted: an odd integer")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Forecast [B, H*C] from windows [B, L, C]."""
        horizon = _horizon(self.num_outputs, inputs, mask, "dlinear")
        trend = moving_average(inputs, self.kernel_size)
        seasonal = TimeLinear(horizon, self.individual, mean_init=True, name="seasonal")
        trend_map = TimeLinear(horizon, self.individual, mean_init=True, name="trend")
        return _flat(seasonal(inputs - trend) + trend_map(trend))
