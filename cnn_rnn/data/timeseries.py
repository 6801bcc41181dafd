"""Forecasting a real time series: windows of the past, the next `horizon` values as targets.

`data.name="timeseries"` reads a univariate or multivariate series [N, C] from a CSV file (a
header row of column names, then numbers) or a `.npy` array ([N] or [N, C]), or one of the
series shipped in `cnn_rnn/data/series/` by name ("sunspots", "co2"; see that folder's README for
sources and licences). The series is split CHRONOLOGICALLY into train / validation / test parts
(`split` gives the train and validation fractions; the test part is the rest), and windows are cut
inside each part only, so no window straddles two parts and nothing from a later part reaches an
earlier one. Every column is normalised with the mean and standard deviation of the TRAINING part
only.

An example is `window` consecutive steps [window, C] (inputs) and, as targets:
  many_to_one    the next `horizon` values [horizon*C] (step-major: t+1's columns, then t+2's).
  many_to_many   at every step t of the window, the `horizon` values after t [window, horizon*C];
                 training counts every step, evaluation only the last (the same forecast as
                 many_to_one, so the two and the baselines are scored on the same numbers).
With `center="last"` (the default) every window, and its targets, are shifted by the window's
last value (per column), so the model forecasts the change from now: a series with a trend leaves
the training range later on (CO2), and a network cannot extrapolate absolute levels it never saw,
while changes stay in range. Persistence is then the zero forecast. The shift cancels in every
error, so metrics are unchanged by it. `center="none"` keeps the globally normalised levels.

Batches carry `target_scale` (the training std of each target), so eval logs report MSE and MAE
in the series' original units (`mse_original`, `mae_original`) next to the normalised loss.

Baselines (persistence, seasonal naive when `period` is given, and a linear AR least-squares fit
on the same window; see `forecast_baselines`) are computed on the evaluation part in original
units; persistence's MSE is the TaskSpec baseline, and the note lists all of them.

The training batch at step s is a seeded-permutation draw of the training windows, a pure function
of (seed, s) (`ArraySource`).
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Sequence
from importlib import resources

import numpy as np

from cnn_rnn.data import forecast_baselines
from cnn_rnn.data.base import ArraySource
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_choice, check_int
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec

# name -> (file in cnn_rnn/data/series, default columns, default period)
SHIPPED = {
    "sunspots": ("sunspots_monthly.csv", ("sunspots",), 132),  # ~11-year solar cycle, monthly
    "co2": ("co2_mauna_loa_monthly.csv", ("co2_ppm",), 12),  # yearly cycle, monthly
}
MODES = ("many_to_one", "many_to_many")
CENTERS = ("last", "none")
SPLITS = ("validation", "test")
SUFFIXES = (".csv", ".npy")


def shipped_path(name: str) -> str:
    """Return the file path of the shipped series `name` (one of SHIPPED)."""
    return str(resources.files("cnn_rnn.data") / "series" / SHIPPED[name][0])


def _bad_path(path: str, why: str) -> ConfigError:
    return ConfigError("data.path", f"{why}; accepted: a {' or '.join(SUFFIXES)} file, or one of "
                       f"{', '.join(SHIPPED)}")


def _select(names: list[str], columns: Sequence[str | int], path: str) -> list[int]:
    """Indices of `columns` (names or integer positions) among `names`; none = all of a .npy."""
    if not columns:
        if len(names) == 1 or path.endswith(".npy"):
            return list(range(len(names)))
        raise ConfigError("data.columns", f"{path} has {len(names)} columns; name the ones to use; "
                          f"accepted: {', '.join(names)}")
    out = []
    for col in columns:
        if isinstance(col, int | np.integer) and not isinstance(col, bool) and 0 <= col < len(
                names):
            out.append(int(col))
        elif isinstance(col, str) and col in names:
            out.append(names.index(col))
        else:
            raise ConfigError("data.columns", f"no column {col!r} in {path}; accepted: "
                              f"{', '.join(names)} (or positions 0..{len(names) - 1})")
    return out


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise _bad_path(path, f"{path} has no header row and data rows")
    return [h.strip() for h in rows[0]], rows[1:]


def _to_float(rows: list[list[str]], idx: list[int], names: list[str], path: str) -> np.ndarray:
    out = np.empty((len(rows), len(idx)), np.float64)
    for i, row in enumerate(rows):
        for j, k in enumerate(idx):
            try:
                out[i, j] = float(row[k])
            except (ValueError, IndexError):
                value = row[k] if k < len(row) else "(missing)"
                raise ConfigError("data.columns", f"{path} row {i + 2} column {names[k]!r} is "
                                  f"{value!r}, not a number; accepted: numeric columns") from None
    return out


@functools.lru_cache(maxsize=8)
def read_series(path: str, columns: tuple[str | int, ...] = ()) -> np.ndarray:
    """Read the series [N, C] (float64) from a CSV or .npy file, or a shipped series by name.

    Raises:
      ConfigError: on a missing or unreadable file, unknown columns, non-numbers or NaNs.

    """
    if path in SHIPPED:
        columns = columns or SHIPPED[path][1]
        path = shipped_path(path)
    if not isinstance(path, str) or not path.endswith(SUFFIXES):
        raise _bad_path(str(path), f"{path!r} is neither a shipped series nor a .csv/.npy path")
    if not os.path.isfile(path):
        raise _bad_path(path, f"no such file {path!r}")
    if path.endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise _bad_path(path, f"cannot read {path}: {str(e).splitlines()[0]}") from e
        if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
            raise _bad_path(path, f"{path} holds a {array.dtype} array of shape {array.shape}, "
                            "not numbers [N] or [N, C]")
        array = array.reshape(len(array), -1).astype(np.float64)
        names = [str(i) for i in range(array.shape[1])]
        series = array[:, _select(names, [int(c) if str(c).isdigit() else c for c in columns],
                                  path)]
    else:
        names, rows = _read_csv(path)
        series = _to_float(rows, _select(names, columns, path), names, path)
    if not np.all(np.isfinite(series)):
        bad = int(np.argwhere(~np.isfinite(series))[0, 0])
        raise ConfigError("data.path", f"{path} has a missing or non-finite value at data row "
                          f"{bad + 1}; accepted: finite numbers (fill or drop gaps first)")
    return series


def split_bounds(n: int, split: Sequence[float]) -> list[tuple[int, int]]:
    """[start, stop) of the chronological train, validation and test parts of N steps."""
    if (len(split) != 2 or any(isinstance(f, bool) or not isinstance(f, int | float)
                               for f in split) or min(split) <= 0 or sum(split) >= 1):
        raise ConfigError("data.split", f"must be two fractions (train, validation) > 0 with sum "
                          f"< 1 (the test part is the rest), got {tuple(split)!r}")
    a = int(round(n * split[0]))
    b = int(round(n * (split[0] + split[1])))
    return [(0, a), (a, b), (b, n)]


def windows_of(part: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """All windows [M, window, C] of a part and their next `horizon` values [M, horizon, C]."""
    total = window + horizon
    idx = np.arange(len(part) - total + 1)[:, None] + np.arange(total)[None, :]
    cut = part[idx]
    return cut[:, :window], cut[:, window:]


def step_futures(part: np.ndarray, starts: int, window: int, horizon: int) -> np.ndarray:
    """For each of `starts` windows, the `horizon` values after every step: [M, window, horizon, C].

    Step t of window m (absolute step m+t) gets part[m+t+1 .. m+t+horizon].
    """
    idx = (np.arange(starts)[:, None, None] + np.arange(window)[None, :, None]
           + np.arange(1, horizon + 1)[None, None, :])
    return part[idx]


class TimeSeriesSource(ArraySource):
    """Windows of a normalised series; `baselines` holds the baselines' errors (original units).

    Attributes:
      mean, std: the training part's statistics per column (normalisation uses these only).
      bounds: [start, stop) of the train, validation and test parts.
      baselines: {"persistence": {"mse", "mae"}, "seasonal_naive": ..., "linear_ar": ...} on the
        evaluation part, in the series' original units.

    """

    mean: np.ndarray
    std: np.ndarray
    bounds: list[tuple[int, int]]
    baselines: dict[str, dict[str, float]]


def _baseline_note(baselines: dict[str, dict[str, float]], period: int | None,
                   window: int, split: str) -> str:
    names = {"persistence": "persistence (last value)",
             "seasonal_naive": f"seasonal naive (period {period})",
             "linear_ar": f"linear AR least squares on the {window}-step window"}
    parts = [f"{names[k]} MSE {v['mse']:.4g} MAE {v['mae']:.4g}" for k, v in baselines.items()]
    return f"{split} part, original units: " + "; ".join(parts)


def _arrays(norm: np.ndarray, bounds: tuple[int, int], window: int, horizon: int, mode: str,
            scale: np.ndarray, train: bool, center: str) -> dict[str, np.ndarray]:
    part = norm[bounds[0]:bounds[1]]
    x, future = windows_of(part, window, horizon)
    n, c = len(x), part.shape[1]
    shift = x[:, -1:, :] if center == "last" else np.zeros((n, 1, c))
    x, future = x - shift, future - shift
    out = {"inputs": x.astype(np.float32),
           "target_scale": np.broadcast_to(np.tile(scale, horizon), (n, horizon * c)).astype(
               np.float32)}
    if mode == "many_to_one":
        out["targets"] = future.reshape(n, horizon * c).astype(np.float32)
    else:
        steps = step_futures(part, n, window, horizon) - shift[:, :, None, :]
        out["targets"] = steps.reshape(n, window, horizon * c).astype(np.float32)
        weights = np.zeros((n, window), np.float32)
        weights[:, -1] = 1.0  # evaluation scores only the window's final forecast
        out["target_weights"] = np.ones_like(weights) if train else weights
    return out


@register_data("timeseries")
def timeseries(seed: int, path: str = "sunspots", columns: Sequence[str | int] = (),
               window: int = 24, horizon: int = 1, period: int | None = None,
               mode: str = "many_to_one", split: Sequence[float] = (0.7, 0.15),
               eval_split: str = "validation", center: str = "last") -> TimeSeriesSource:
    """Build a forecasting source from a CSV/.npy series or a shipped one.

    Args:
      seed: training-order seed.
      path: a .csv (header row, then numbers) or .npy ([N] or [N, C]) file, or a shipped series
        name ("sunspots", "co2").
      columns: CSV column names (or positions; .npy column positions) to read and forecast;
        empty = every column of a .npy, the only column of a CSV, or the shipped default.
      window: input steps per example.
      horizon: future steps to forecast from each window.
      period: season length for the seasonal-naive baseline (<= window); None = the shipped
        series' cycle, or no seasonal baseline for other files; 0 = none.
      mode: "many_to_one" (one forecast per window) or "many_to_many" (a forecast at every step).
      split: fractions of the series for the train and validation parts (test: the rest).
      eval_split: the part that evaluation (and the baselines) use: "validation" or "test".
      center: "last" (inputs and targets relative to the window's last value) or "none".

    """
    if not isinstance(path, str):
        raise _bad_path(str(path), f"must be a string, got {path!r}")
    window = check_int("window", window, 1)
    horizon = check_int("horizon", horizon, 1)
    check_choice("mode", mode, MODES)
    check_choice("eval_split", eval_split, SPLITS)
    check_choice("center", center, CENTERS)
    if isinstance(columns, str | int):
        columns = (columns,)
    series = read_series(path, tuple(columns))
    if period is None:
        period = SHIPPED[path][2] if path in SHIPPED else 0
    period = check_int("period", period, 0)
    if period > window:
        raise ConfigError("data.period", f"{period} is longer than window={window}: the seasonal "
                          f"baseline needs a whole period inside the window; accepted: 0..{window}")
    bounds = split_bounds(len(series), split)
    for name, (a, b) in zip(("train", "validation", "test"), bounds, strict=True):
        if b - a < window + horizon + (1 if name == "train" else 0):
            raise ConfigError("data.window", f"window + horizon = {window + horizon} steps do not "
                              f"fit the {name} part ({b - a} of {len(series)} steps); accepted: "
                              "a shorter window or horizon, or a longer series")
    train_part = series[bounds[0][0]:bounds[0][1]]
    mean, std = train_part.mean(axis=0), train_part.std(axis=0)
    if np.any(std == 0):
        raise ConfigError("data.columns", "a column is constant over the training part; "
                          "accepted: columns that vary")
    norm = (series - mean) / std
    ev = bounds[SPLITS.index(eval_split) + 1]
    train = _arrays(norm, bounds[0], window, horizon, mode, std, True, center)
    test = _arrays(norm, ev, window, horizon, mode, std, False, center)
    baselines = forecast_baselines.all_baselines(
        windows_of(train_part, window, horizon), windows_of(series[ev[0]:ev[1]], window, horizon),
        horizon, period or None)
    kind = "regression" if mode == "many_to_one" else "sequence_regression"
    spec = TaskSpec(kind=kind, num_outputs=horizon * series.shape[1],
                    input_shape=(window, series.shape[1]),
                    baseline=baselines["persistence"]["mse"], baseline_metric="mse_original",
                    baseline_note=_baseline_note(baselines, period, window, eval_split))
    source = TimeSeriesSource(spec, train, test, seed)
    source.mean, source.std, source.bounds, source.baselines = mean, std, bounds, baselines
    return source
