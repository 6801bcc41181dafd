"""Train on your own arrays, no code: a `.npz` with x_train, y_train, x_test, y_test (Keras layout).

  python -m experiments.run --config=configs/arrays.py:path=my.npz,model=cnn2d --workdir=DIR
  python -m experiments.run --config=configs/arrays.py:path=my.npz,model=gru,pixels=sequential ...

Arguments: path (required), model (`cnn2d` for images [N, H, W(, C)], or a sequence model:
rnn, irnn, lstm, gru, tcn, transformer, lru, mingru, cnn1d), pixels (`none` | `sequential` |
`permuted`: read images pixel by pixel), task (`auto` | `classification` | `regression`),
layout (`auto` | `images` | `sequences`), normalize, steps, batch_size, seed.
Integer targets mean classification, float targets regression (see cnn_rnn/data/arrays.py).
"""

import ml_collections

from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN = dict(levels=6, hidden=16, kernel_size=5, dropout=0.0)
# get_config() needs `path`; this is what `--list` suggests and the docs' field table uses.
EXAMPLE = "path=my.npz"
CNN2D = dict(name="cnn2d", features=(32, 64, 64), kernel_size=3, pool=2, batch_norm=True,
             head="flatten", hidden=128, dropout=0.1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config training `model` on the arrays of the `.npz` at `path` (required)."""
    a = parse_arg(arg, dict(path="", model="cnn2d", pixels="none", task="auto", layout="auto",
                            normalize=True, steps=2000, batch_size=128, seed=0))
    if not a["path"]:
        raise ValueError("config argument path is required, e.g. configs/arrays.py:path=my.npz")
    # Sequence models are sized for ~70K parameters (input_dim/outputs only size the budget).
    model = dict(CNN2D) if a["model"] == "cnn2d" else model_config(
        a["model"], budget=70_000, input_dim=1, outputs=10, tcn=TCN)
    data = dict(name="arrays", path=a["path"], task=a["task"], layout=a["layout"],
                normalize=a["normalize"], pixels=a["pixels"])
    return base_config(model=model, data=data, steps=a["steps"], batch_size=a["batch_size"],
                       learning_rate=2e-3, schedule="cosine", grad_clip_norm=1.0,
                       weight_decay=1e-4, seed=a["seed"])
