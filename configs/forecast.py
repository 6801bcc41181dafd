"""Forecasting a real series with a causal TCN, LSTM, GRU or Transformer, against baselines.

The series is a shipped one or your own CSV/.npy; the baselines are persistence, seasonal naive
and a linear AR fit.

Arguments (`configs/forecast.py:model=gru,series=co2`): model (tcn, lstm, gru, transformer),
series (sunspots, co2, or a .csv/.npy path; then set `columns`), columns (a list: `columns=a,b`),
window, horizon (0 = the series' default), mode (many_to_one, many_to_many), eval_split
(validation, test), steps, seed. Evaluation lines print the MSE/MAE in the series' original
units and every baseline on the same windows.

    python -m experiments.run --config=configs/forecast.py:model=gru,series=sunspots --workdir=DIR
"""

from typing import Any

import ml_collections

from configs.common import base_config, parse_arg

MODELS = ("tcn", "lstm", "gru", "transformer")
# series -> (window, horizon, period): monthly data. The sunspot cycle (~11 years, irregular) is
# longer than the 6-year window, so it has no seasonal-naive baseline; CO2's yearly one does.
SERIES = {"sunspots": (72, 6, 0), "co2": (24, 12, 12)}
HIDDEN = 32  # recurrent state / TCN channels / Transformer width: ~3-12K parameters


def model_for(name: str) -> dict[str, Any]:
    """The model section of `name` for forecasting (the same for both modes)."""
    if name in ("lstm", "gru"):
        return dict(name=name, hidden=HIDDEN)
    if name == "tcn":  # causal by construction; 4 levels of k=4 see 91 steps
        return dict(name="tcn", levels=4, hidden=HIDDEN, kernel_size=4, dropout=0.0)
    if name == "transformer":  # causal: output t (and the last step's readout) sees steps <= t
        return dict(name="transformer", d_model=HIDDEN, num_heads=4, num_layers=2,
                    mlp_dim=2 * HIDDEN, dropout=0.0, positions="sinusoidal", causal=True,
                    pool="last", embed_kernel=3)
    raise ValueError(f"config argument model={name!r}; accepted: {', '.join(MODELS)}")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The forecasting config: `model` on `series`, window and horizon from SERIES unless set."""
    a = parse_arg(arg, dict(model="gru", series="sunspots", columns=(), window=0, horizon=0,
                            mode="many_to_one", eval_split="validation", steps=600,
                            learning_rate=3e-3, seed=0))
    window, horizon, period = SERIES.get(a["series"], (24, 1, None))
    data = dict(name="timeseries", path=a["series"], window=a["window"] or window,
                horizon=a["horizon"] or horizon, mode=a["mode"], eval_split=a["eval_split"],
                period=period)
    if a["columns"]:
        data["columns"] = a["columns"]
    return base_config(model=model_for(a["model"]), data=data, steps=a["steps"], batch_size=64,
                       learning_rate=a["learning_rate"], optimizer="adamw", schedule="cosine",
                       weight_decay=1e-4, grad_clip_norm=1.0, seed=a["seed"])
