"""Honest forecasting baselines, in numpy: persistence, seasonal naive and a linear AR fit.

A neural forecaster is only interesting if it beats these on the same windows:
  persistence      x̂_{t+k} = x_t, the last value of the window, for every k = 1..horizon.
  seasonal naive   x̂_{t+k} = x_{t+k-p·ceil(k/p)}: the value one period p earlier (inside the
                   window, so the window must hold at least p steps).
  linear AR        x̂ = W [x_{t-w+1..t}, 1]: ordinary least squares from the whole window (every
                   column) to the `horizon` future values, fitted on the training windows only.
All take windows x [N, W, C] and return forecasts [N, horizon, C] in the windows' units.
"""

from __future__ import annotations

import numpy as np


def persistence(windows: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast every future step as the window's last value."""
    return np.repeat(windows[:, -1:, :], horizon, axis=1)


def seasonal_naive(windows: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Forecast step t+k as the value one period earlier, x_{t+k-p·ceil(k/p)}."""
    w = windows.shape[1]
    if not 1 <= period <= w:
        raise ValueError(f"period {period} must be in [1, window={w}]")
    k = np.arange(1, horizon + 1)
    # Index in the window of t+k-p*ceil(k/p), with t = w-1 the window's last position.
    idx = w - 1 + k - period * np.ceil(k / period).astype(int)
    return windows[:, idx, :]


def fit_linear_ar(windows: np.ndarray, futures: np.ndarray) -> np.ndarray:
    """Least-squares weights [W*C + 1, horizon*C] from flattened windows (and a bias) to futures.

    Args:
      windows: training windows [N, W, C].
      futures: their next `horizon` values [N, horizon, C].

    """
    n = windows.shape[0]
    x = np.concatenate([windows.reshape(n, -1), np.ones((n, 1))], axis=1)
    weights, *_ = np.linalg.lstsq(x, futures.reshape(n, -1), rcond=None)
    return weights


def linear_ar(weights: np.ndarray, windows: np.ndarray, horizon: int) -> np.ndarray:
    """Forecasts [N, horizon, C] of the fitted linear AR model for windows [N, W, C]."""
    n, _, c = windows.shape
    x = np.concatenate([windows.reshape(n, -1), np.ones((n, 1))], axis=1)
    return (x @ weights).reshape(n, horizon, c)


def errors(forecast: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE and MAE of a forecast, averaged over examples, steps and columns."""
    diff = np.asarray(forecast, np.float64) - truth
    return {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}


def all_baselines(train: tuple[np.ndarray, np.ndarray] | None,
                  test: tuple[np.ndarray, np.ndarray], horizon: int, period: int | None
                  ) -> dict[str, dict[str, float]]:
    """Errors of every baseline on `test`; the AR model is fitted on `train`.

    Args:
      train: (windows [N, W, C], futures [N, horizon, C]) to fit the linear AR model on, or
        None to leave it out (a least-squares problem of W x C columns: minutes at the
        long-horizon benchmark's 336 x 7).
      test: (windows, futures) to score on, in the units the errors should be in.
      horizon: future steps forecast.
      period: season length for seasonal naive, or None to leave it out.

    Returns:
      {"persistence": {"mse", "mae"}, ["seasonal_naive": ...], "linear_ar": ...}.

    """
    windows, futures = test
    out = {"persistence": errors(persistence(windows, horizon), futures)}
    if period:
        out["seasonal_naive"] = errors(seasonal_naive(windows, horizon, period), futures)
    if train is not None:
        out["linear_ar"] = errors(linear_ar(fit_linear_ar(*train), windows, horizon),
                                  futures)
    return out
