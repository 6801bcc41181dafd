"""IMDB review sentiment from raw bytes (tfds `imdb_reviews`, prepared once with TensorFlow).

Arguments (`configs/imdb.py:model=lstm,max_len=512`): model (see configs/presets.MODELS), max_len
(bytes kept per review; padded reviews carry a mask), steps, seed, data_dir.
"""

import ml_collections

from configs.common import base_config, parse_arg
from configs.presets import model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The IMDB sentiment config: `model` on the first `max_len` bytes of each review."""
    a = parse_arg(arg, dict(model="lstm", max_len=512, steps=5000, seed=0, data_dir=None))
    model = model_config(a["model"], budget=100_000, input_dim=256, outputs=2,
                         tcn=dict(levels=8, hidden=32, kernel_size=5, dropout=0.1))
    data = dict(name="imdb_reviews", max_len=a["max_len"], data_dir=a["data_dir"])
    return base_config(model=model, data=data, steps=a["steps"], batch_size=32,
                       learning_rate=1e-3, grad_clip_norm=1.0, seed=a["seed"])
