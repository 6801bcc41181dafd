"""Small trained runs for the tests of what comes after training (load_run, predict, export ...).

`forecast_run` trains a GRU for a few steps on a seasonal series that the test writes as a CSV
with a date column; `classify_run` a small CNN on MNIST-1D. Both checkpoint twice.
"""

import datetime

import numpy as np
from config_helpers import small_config

from configs.common import base_config
from configs.forecast import model_for

WINDOW, HORIZON, PERIOD = 24, 6, 12


def write_series(path, n=240, seed=0):
    """A monthly CSV `date,value,other`: a yearly cycle, a trend and noise; returns the values."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = 10 + 0.02 * t + 3 * np.sin(2 * np.pi * t / PERIOD) + 0.3 * rng.standard_normal(n)
    other = rng.standard_normal(n)
    start = datetime.date(2000, 1, 1)
    with open(path, "w") as f:
        f.write("date,value,other\n")
        for i in range(n):
            d = datetime.date(start.year + (start.month - 1 + i) // 12,
                              (start.month - 1 + i) % 12 + 1, 1)
            f.write(f"{d.isoformat()},{value[i]:.6f},{other[i]:.6f}\n")
    return value


def forecast_config(csv_path, model="gru", steps=10):
    """A quiet config of `configs/forecast.py`'s model on the series in `csv_path`."""
    c = base_config(model=model_for(model), steps=steps, batch_size=16, learning_rate=3e-3,
                    checkpoint_every=5, eval_every=5,
                    data=dict(name="timeseries", path=str(csv_path), columns=("value",),
                              window=WINDOW, horizon=HORIZON, period=PERIOD))
    c.progress = False
    return c


def train(config, workdir):
    """Train `config` into `workdir`; return the workdir."""
    from cnn_rnn.training.loop import train_and_evaluate

    train_and_evaluate(config, str(workdir))
    return workdir


def forecast_run(base, model="gru"):
    """(workdir, csv path) of a trained forecasting run under `base`."""
    csv_path = base / "series.csv"
    if not csv_path.exists():
        write_series(csv_path)
    return train(forecast_config(csv_path, model), base / f"forecast_{model}"), csv_path


def classify_run(base):
    """The workdir of a small CNN trained on MNIST-1D for 10 steps."""
    config = small_config(10, batch_size=32, checkpoint_every=5, eval_every=5)
    return train(config, base / "classify")
