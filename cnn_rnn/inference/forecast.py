"""Forecasting from a trained timeseries run: the next `horizon` values after a CSV's last row.

The input is a CSV with the run's columns (a header, then rows; other columns are ignored); its
last `window` rows are normalised with the TRAINING part's statistics of the run's series,
shifted by the last value when the run was trained with center="last", and given to the model;
the output is mapped back to the original units. Beside it, the baselines of the run's task on
the same window: persistence, seasonal naive (when the run has a period) and the linear AR model
fitted on the run's training windows. When the CSV's first column holds dates (ISO format), the
forecast's dates continue them (by months when the last two rows are whole months apart, else by
their difference); otherwise rows are numbered on from the input's.
"""

from __future__ import annotations

import csv
import datetime
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_rnn.data import forecast_baselines as fb
from cnn_rnn.data.timeseries import SHIPPED, read_series, split_bounds, windows_of
from cnn_rnn.errors import ConfigError


def run_columns(data_cfg: dict[str, Any]) -> tuple[str | int, ...]:
    """The columns a timeseries run forecasts (the shipped series' default when none are set)."""
    columns = tuple(data_cfg.get("columns") or ())
    if not columns and data_cfg.get("path") in SHIPPED:
        columns = SHIPPED[data_cfg["path"]][1]
    return columns


def read_input(path: str, columns: Sequence[str | int], window: int) -> np.ndarray:
    """The input series [N, C] of `columns` from `path`; ConfigError("input") if it does not fit."""
    if not path.endswith(".csv"):
        raise ConfigError("input", f"{path} is not a .csv file; accepted: a CSV with the run's "
                          f"columns ({', '.join(map(str, columns)) or 'its one column'})")
    try:
        series = read_series(path, tuple(columns))
    except ConfigError as e:
        raise ConfigError("input", str(e).split(": ", 1)[1]) from None
    if len(series) < window:
        raise ConfigError("input", f"{path} has {len(series)} rows, fewer than the run's window "
                          f"of {window}; accepted: at least {window} rows of history")
    return series


def dates_of(path: str) -> list[str] | None:
    """The first column's values if every one of them is an ISO date or time, else None."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r][1:]
    try:
        for r in rows:
            datetime.datetime.fromisoformat(r[0].strip())
    except (ValueError, IndexError):
        return None
    return [r[0].strip() for r in rows]


def continue_dates(dates: Sequence[str], n: int) -> list[str]:
    """The `n` timestamps after `dates` (whole months if its last two are, else their gap)."""
    a, b = (datetime.datetime.fromisoformat(d) for d in dates[-2:])
    date_only = len(dates[-1]) <= 10
    months = (b.year - a.year) * 12 + b.month - a.month
    out = []
    for k in range(1, n + 1):
        if a.day == b.day and a.time() == b.time() and months > 0:
            m = b.month - 1 + k * months
            t = b.replace(year=b.year + m // 12, month=m % 12 + 1)
        else:
            t = b + k * (b - a)
        out.append(t.date().isoformat() if date_only else t.isoformat())
    return out


def forecast(run: Any, path: str) -> dict[str, Any]:
    """Forecast the `horizon` values after the last row of the CSV at `path` with `run`.

    Returns:
      {"columns": names, "history": [N, C], "index": the forecast's dates or step numbers,
       "history_index": the input's, "model": [horizon, C], and one [horizon, C] per baseline
       ("persistence", "seasonal_naive" when the run has a period, "linear_ar")}.

    """
    cfg = run.config["data"]
    columns = run_columns(cfg)
    window, c = run.spec.input_shape
    horizon = run.spec.num_outputs // c
    series = read_input(path, columns, window)
    if series.shape[1] != c:
        raise ConfigError("input", f"{path} gives {series.shape[1]} columns, the run was trained "
                          f"on {c}; accepted: the columns {', '.join(map(str, columns))}")
    last = series[-window:]
    x = (last - run.data.mean) / run.data.std
    shift = x[-1:] if (cfg.get("center") or "last") == "last" else np.zeros((1, c))
    out = np.asarray(run.apply((x - shift)[None].astype(np.float32)), np.float64)
    if run.spec.many_to_many:
        out = out[:, -1]  # the forecast made at the window's last step
    model = (out.reshape(horizon, c) + shift) * run.data.std + run.data.mean
    train_series = read_series(cfg["path"], tuple(cfg.get("columns") or ()))
    bounds = split_bounds(len(train_series), tuple(cfg.get("split") or (0.7, 0.15)))
    train_part = train_series[bounds[0][0]:bounds[0][1]]
    weights = fb.fit_linear_ar(*windows_of(train_part, window, horizon))
    period = cfg.get("period")
    if period is None:
        period = SHIPPED[cfg["path"]][2] if cfg["path"] in SHIPPED else 0
    result = {"columns": [str(col) for col in columns] or ["value"], "history": series,
              "model": model, "persistence": fb.persistence(last[None], horizon)[0]}
    if period:
        result["seasonal_naive"] = fb.seasonal_naive(last[None], horizon, period)[0]
    result["linear_ar"] = fb.linear_ar(weights, last[None], horizon)[0]
    dates = dates_of(path)
    n = len(series)
    if dates is not None and len(dates) >= 2:
        result["history_index"], result["index"] = dates, continue_dates(dates, horizon)
    else:
        result["history_index"], result["index"] = list(range(n)), list(range(n, n + horizon))
    return result


FORECASTS = ("model", "persistence", "seasonal_naive", "linear_ar")


def write_csv(result: dict[str, Any], path: str) -> None:
    """Write one row per forecast step.

    The date (or step), then per column the model's forecast and each baseline's (`<column>`,
    `<column>_persistence`, ...).
    """
    names = [k for k in FORECASTS if k in result]
    is_date = isinstance(result["index"][0], str)
    header = ["date" if is_date else "step"] + [
        col if k == "model" else f"{col}_{k}" for col in result["columns"] for k in names]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, when in enumerate(result["index"]):
            w.writerow([when] + [f"{result[k][i, j]:.6g}" for j in range(len(result["columns"]))
                                 for k in names])


def plot(result: dict[str, Any], path: str, title: str = "", history: int = 0) -> None:
    """History (its last `history` rows; 0: four horizons' worth, at least 48) + forecasts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = len(result["index"])
    keep = history or max(48, 4 * horizon)
    cols = result["columns"]
    fig, axes = plt.subplots(len(cols), 1, figsize=(8, 2.8 * len(cols)), squeeze=False)
    n = len(result["history"])
    xs_hist = np.arange(max(0, n - keep), n)
    xs_fut = np.arange(n, n + horizon)
    styles = {"model": ("C1", "-", "model"), "persistence": ("C7", ":", "persistence"),
              "seasonal_naive": ("C2", "--", "seasonal naive"), "linear_ar": ("C0", "-.",
                                                                              "linear AR")}
    for j, (ax, col) in enumerate(zip(axes[:, 0], cols, strict=True)):
        ax.plot(xs_hist, result["history"][xs_hist, j], "k", label="history")
        for k, (color, ls, label) in styles.items():
            if k in result:
                ax.plot(np.r_[n - 1, xs_fut], np.r_[result["history"][-1, j], result[k][:, j]],
                        color=color, ls=ls, marker="o" if k == "model" else None, ms=3,
                        label=label)
        ax.set_ylabel(col)
        labels = [*[result["history_index"][i] for i in xs_hist], *result["index"]]
        ticks = np.linspace(0, len(labels) - 1, min(6, len(labels))).astype(int)
        ax.set_xticks(xs_hist[0] + ticks, [str(labels[t]) for t in ticks], fontsize=7)
    axes[0, 0].legend(fontsize=7, ncol=3)
    axes[0, 0].set_title(title or f"forecast of the next {horizon} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def png_path(csv_path: str) -> str:
    """The PNG written beside a forecast CSV."""
    return os.path.splitext(csv_path)[0] + ".png"
