"""One point of the long-horizon forecasting benchmark (ETTh1 and friends) under its protocol.

    python -m experiments.run --config=configs/ltsf.py:path=ETTh1.csv,model=dlinear,window=336,\
horizon=96,features=M --workdir=DIR

Arguments: path (the ETT csv: a `date` column, then HUFL HULL MUFL MULL LUFL LULL OT; not shipped,
see docs/forecast/ltsf.md), model (dlinear, nlinear, linear, gru, lstm, tcn, transformer),
window (input steps, 336 or 96 in the literature), horizon (96, 192, 336, 720), features (M: all
seven variables in and out; S: OT only), columns (`;`-separated names, replacing the features'
columns), protocol (ett_hourly, the default: 8,640 / 2,880 / 2,880 rows; ett_minute; borders,
then borders=TRAIN_END;VAL_END;TEST_END), eval_split (validation: what training watches, as the
protocol's model selection does; test), epochs (10) and patience (3: read by the benchmark sweep,
which tests the checkpoint early stopping would have kept), batch_size and learning_rate (0: the
reference's for the model), seed.

The recipe is LTSF-Linear's (cure-lab/LTSF-Linear, run_longExp.py and its ETTh1 scripts): Adam,
MSE on z-scored values, `epochs` epochs of every training window in batches (the last partial
batch dropped), the rate held for two epochs and then halved every epoch (lradj "type1"), an
evaluation of the validation part after every epoch, a checkpoint kept per epoch. Reference
settings: DLinear batch 8, rate 1e-4 (scripts/EXP-LongForecasting/DLinear/etth1.sh); Linear and
NLinear batch 32, rate 0.005 (Linear/etth1.sh). The reference has no GRU, LSTM or TCN; those and
our Transformer get batch 32, rate 1e-3, the same epochs, schedule and selection.
"""

import ml_collections

from configs.common import base_config, parse_arg
from configs.forecast import model_for

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
FEATURES = {"M": ETT_COLUMNS, "S": ("OT",)}
LINEAR = ("dlinear", "nlinear", "linear")
MODELS = (*LINEAR, "gru", "lstm", "tcn", "transformer")
# model -> (batch size, learning rate) of the reference scripts (ours for the networks it lacks)
RECIPES = {"dlinear": (8, 1e-4), "nlinear": (32, 5e-3), "linear": (32, 5e-3)}
NETWORK_RECIPE = (32, 1e-3)
# the train part's end under each named protocol (its windows set the steps of an epoch)
TRAIN_END = {"ett_hourly": 8640, "ett_minute": 34560}


def _borders(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(";")) if text else ()
    except ValueError:
        raise ValueError(f"config argument borders={text!r}: accepted: three ';'-separated "
                         "integers, e.g. borders=8640;11520;14400") from None


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """One point of the ETT benchmark: `model` on the csv at `path`, under LTSF-Linear's recipe."""
    a = parse_arg(arg, dict(path="ETTh1.csv", model="dlinear", window=336, horizon=96,
                            features="M", columns="", protocol="ett_hourly", borders="",
                            eval_split="validation", epochs=10, patience=3, batch_size=0,
                            learning_rate=0.0, seed=0))
    if a["model"] not in MODELS:
        raise ValueError(f"config argument model={a['model']!r}; accepted: {', '.join(MODELS)}")
    if a["features"] not in FEATURES:
        raise ValueError(f"config argument features={a['features']!r}; accepted: M, S")
    borders = _borders(a["borders"])
    batch, lr = RECIPES.get(a["model"], NETWORK_RECIPE)
    batch, lr = a["batch_size"] or batch, a["learning_rate"] or lr
    # An epoch: every training window once, the last partial batch dropped (as the reference).
    # A protocol or border the data refuses is reported by the source; 1 keeps this arithmetic
    # going until then.
    train_end = TRAIN_END.get(a["protocol"], borders[0] if borders else 0)
    epoch = max(1, (train_end - a["window"] - a["horizon"] + 1) // batch)
    model = (dict(name=a["model"]) if a["model"] in LINEAR else model_for(a["model"]))
    columns = tuple(a["columns"].split(";")) if a["columns"] else FEATURES[a["features"]]
    data = dict(name="timeseries", path=a["path"], columns=columns, window=a["window"],
                horizon=a["horizon"], protocol=a["protocol"], borders=borders,
                eval_split=a["eval_split"], center="none", period=0)
    c = base_config(model=model, data=data, steps=a["epochs"] * epoch, batch_size=batch,
                    learning_rate=lr, optimizer="adam", schedule="step", eval_every=epoch,
                    checkpoint_every=epoch, seed=a["seed"])
    c.optimizer.update(decay_every=epoch, decay_begin=epoch, decay_rate=0.5)
    c.keep_checkpoints = a["epochs"]  # every epoch's model, for the early-stopping selection
    c.patience = a["patience"]  # epochs without a better validation loss before stopping
    return c
