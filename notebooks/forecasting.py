# %% [markdown]
# # Forecasting a real series: a GRU against persistence, seasonal naive and a linear AR fit
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnn-rnn/cnn_rnn/blob/main/notebooks/forecasting.ipynb)
#
# Recurrent networks are the textbook tool for time series. This notebook forecasts the
# **Mauna Loa CO2 record** (monthly, 1958-2001, US government public-domain data shipped in
# `cnn_rnn/data/series/`) with the library's `timeseries` data source
# (`cnn_rnn/data/timeseries.py`):
#
# * the series is split **chronologically** into train / validation / test parts, and windows
#   are cut inside each part only, so nothing from the future leaks into training;
# * every column is normalised with the **training part's** mean and standard deviation;
# * each example is a `window` of past months; the target is the next `horizon` months.
#
# A network only matters if it beats the **honest baselines** on the same windows
# (`cnn_rnn/data/forecast_baselines.py`): *persistence* (the last value), *seasonal naive*
# (the value one period earlier) and a *linear autoregressive* least-squares fit on the window.
# Errors are reported in the series' own units (ppm).

# %%
# On Colab, install the package (a minute); anywhere else this cell does nothing: install the
# repository yourself with `pip install -e .` from its root.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "cnn_rnn @ git+https://github.com/cnn-rnn/cnn_rnn"], check=True)

# %%
import logging
import os

import matplotlib.pyplot as plt
import numpy as np

from cnn_rnn.data.registry import build_data
from cnn_rnn.data.timeseries import read_series, windows_of
from cnn_rnn.notebook import notebook_settings
from cnn_rnn.training.loop import train_and_evaluate
from configs.forecast import get_config

logging.getLogger("absl").setLevel(logging.WARNING)
SIZE, WORKDIR = notebook_settings("forecasting")
STEPS = 150 if SIZE == "small" else 1500
print(f"SIZE: {SIZE}; {STEPS} training steps; runs in {WORKDIR}")

# %% [markdown]
# ## 1. The series and its chronological split

# %%
data = build_data(dict(name="timeseries", path="co2", window=24, horizon=12), seed=0)
co2 = read_series("co2")[:, 0]
fig, ax = plt.subplots(figsize=(9, 3))
ax.plot(co2, lw=1)
for (start, _), name in zip(data.bounds, ("train", "validation", "test"), strict=True):
    ax.axvline(start, color="gray", ls=":")
    ax.text(start + 5, co2.max() - 2, name)
ax.set_xlabel("month since March 1958")
ax.set_ylabel("CO2 (ppm)")
plt.show()
print("training mean / std:", data.mean, data.std)
print("baselines on the validation windows (ppm^2, ppm):")
for name, err in data.baselines.items():
    print(f"  {name:15s} MSE {err['mse']:8.3f}  MAE {err['mae']:.3f}")

# %% [markdown]
# ## 2. A GRU forecasting the next 12 months from the last 24
#
# Windows are centred on their last value (`center="last"`, the default), so the network
# predicts the *change* from now: the trend carries the test part above anything seen in
# training, and a network cannot extrapolate absolute levels it never saw.

# %%
config = get_config(f"model=gru,series=co2,steps={STEPS}")
config.progress = False
summary = train_and_evaluate(config, os.path.join(WORKDIR, "gru_co2"))
gru = summary["eval"]
print(f"GRU ({summary['params']:,} parameters): MSE {gru['mse_original']:.3f} ppm^2, "
      f"MAE {gru['mae_original']:.3f} ppm")
for name, err in data.baselines.items():
    print(f"  ratio to {name}: {gru['mse_original'] / err['mse']:.3f}")

# %% [markdown]
# ## 3. What the forecasts look like
#
# The model's 12-month forecast from a few validation windows, against the truth and the
# linear AR forecast.

# %%
import jax  # noqa: E402

from cnn_rnn.data import forecast_baselines as fb  # noqa: E402
from cnn_rnn.training import load_run  # noqa: E402

run = load_run(os.path.join(WORKDIR, "gru_co2"))  # the newest intact checkpoint, verified
x = data.test["inputs"][::60]
last = x[:, -1:, 0]  # centred windows: add back the last value, then undo the normalisation
pred = (np.asarray(jax.jit(run.apply)(x)) + last) * data.std[0] + data.mean[0]
truth = (data.test["targets"][::60] + last) * data.std[0] + data.mean[0]
start = data.bounds[1][0]
train_windows = windows_of(co2[: data.bounds[0][1], None], 24, 12)
raw_windows = windows_of(co2[start: data.bounds[1][1], None], 24, 12)[0][::60]
ar = fb.linear_ar(fb.fit_linear_ar(*train_windows), raw_windows, 12)[..., 0]
fig, axes = plt.subplots(1, len(x), figsize=(3 * len(x), 2.6), sharey=False)
for i, ax in enumerate(np.atleast_1d(axes)):
    ax.plot(range(24), raw_windows[i, :, 0], color="gray", label="input")
    ax.plot(range(24, 36), truth[i], "k", label="truth")
    ax.plot(range(24, 36), pred[i], "C1", label="GRU")
    ax.plot(range(24, 36), ar[i], "C2--", label="linear AR")
np.atleast_1d(axes)[0].legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 4. Check
#
# The network must beat persistence. Whether it beats the linear AR fit is the honest
# question (`python -m experiments.sweep --config=configs/sweeps/forecast.py` gives the full
# table for every model on both shipped series; see docs/forecasting.md).

# %%
assert gru["mse_original"] < data.baselines["persistence"]["mse"], gru
print("OK: the GRU beats persistence; linear AR ratio "
      f"{gru['mse_original'] / data.baselines['linear_ar']['mse']:.2f}")

# %% [markdown]
# ## 5. A real forecast from `predict`
#
# The trained run forecasts from a CSV of new data with no code: `experiments.predict` reopens
# the workdir (`load_run`), takes the CSV's last 24 months, and writes the next 12 with the
# baselines' forecasts beside them and the dates continued, plus a PNG. Here the CSV is the
# last four years of the record (the run's columns: a date and `co2_ppm`).

# %%
import datetime  # noqa: E402

history = co2[-48:]
first = len(co2) - len(history)  # months since March 1958
dates = [datetime.date(1958 + (2 + first + i) // 12, (2 + first + i) % 12 + 1, 1)
         for i in range(len(history))]
csv_path = os.path.join(WORKDIR, "co2_recent.csv")
with open(csv_path, "w") as f:
    f.write("date,co2_ppm\n")
    f.writelines(f"{d.isoformat()},{v:.2f}\n" for d, v in zip(dates, history, strict=True))
out = os.path.join(WORKDIR, "co2_forecast.csv")
done = subprocess.run([sys.executable, "-m", "experiments.predict",
                       f"--workdir={os.path.join(WORKDIR, 'gru_co2')}", f"--input={csv_path}",
                       f"--output={out}"], capture_output=True, text=True)
print(done.stdout or done.stderr)
assert done.returncode == 0, done.stderr
plt.figure(figsize=(8, 2.8))
plt.imshow(plt.imread(out.replace(".csv", ".png")))
plt.axis("off")
plt.show()
print(f"OK: the next 12 months from {dates[-1]:%Y-%m}, with the baselines, in {out}")
