"""Any model on MNIST-1D (Greydanus & Kobak 2020): standard or shuffled positions.

Arguments (`configs/mnist1d.py:model=lstm,shuffle=true`): model, shuffle, steps, seed. The
per-model `configs/mnist1d_<model>.py` files hold each family's tuned defaults; this one puts
every family on the same footing (the comparison table in docs/models.md).
"""

import importlib

import ml_collections

from configs.common import parse_arg

MODELS = ("cnn", "gru", "lstm", "rnn", "irnn", "tcn", "transformer", "lru", "mingru", "hybrid")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The MNIST-1D config of `model`: its family's tuned config, standard or shuffled."""
    a = parse_arg(arg, dict(model="cnn", shuffle=False, steps=0, seed=0))
    if a["model"] not in MODELS:
        raise ValueError(f"config argument model={a['model']!r}; accepted: {', '.join(MODELS)}")
    c = importlib.import_module(f"configs.mnist1d_{a['model']}").get_config()
    c.data.shuffle_positions = a["shuffle"]
    c.seed = a["seed"]
    if a["steps"]:
        c.steps = a["steps"]
    return c
