"""Every shipped config loads, validates and names real models and data; tfds-backed configs
train end to end under `tfds.testing.mock_data` (no TensorFlow, no network)."""

import glob
import importlib
import os

import pytest
import tensorflow_datasets as tfds

from cnn_rnn.sweep import Point, validate_points
from cnn_rnn.training.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT_CONFIGS = sorted(
    os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not p.endswith(("__init__.py", "common.py", "presets.py")))
VARIANTS = [
    ("configs.adding", f"model={m},T=600") for m in ("rnn", "irnn", "lstm", "gru", "tcn",
                                                    "transformer", "lru", "mingru")
] + [
    ("configs.adding", "model=lstm,T=100,variant=cpu,placement=halves"),
    ("configs.copy", "model=tcn,T=1000"), ("configs.copy", "model=lstm,T=100,variant=cpu"),
    ("configs.copy", "model=transformer,T=100,variant=cpu"),
    ("configs.pixels", "model=gru,dataset=mnist,order=permuted"),
    ("configs.pixels", "model=tcn,dataset=cifar10"),
    ("configs.pixels", "model=irnn,dataset=digits,variant=cpu"),
    ("configs.mnist1d", "model=transformer,shuffle=true"),
    ("configs.shakespeare", "model=transformer"), ("configs.imdb", "model=tcn"),
]


def _load(module, arg=None):
    return importlib.import_module(module).get_config(arg)


@pytest.mark.parametrize("module", EXPERIMENT_CONFIGS)
def test_each_config_file_validates(module):
    validate_points([Point(module, _load(module))])


@pytest.mark.parametrize("module,arg", VARIANTS, ids=[f"{m}:{a}" for m, a in VARIANTS])
def test_config_variants_validate(module, arg):
    validate_points([Point(arg, _load(module, arg))])


def test_sweep_configs_validate():
    for path in glob.glob(os.path.join(ROOT, "configs", "sweeps", "*.py")):
        name = os.path.basename(path)[:-3]
        if name == "__init__":
            continue
        module = importlib.import_module(f"configs.sweeps.{name}")
        validate_points(module.get_points(module.get_config()))


TFDS_CONFIGS = [
    ("configs.pixels", "model=gru,dataset=mnist,variant=cpu"),
    ("configs.pixels", "model=tcn,dataset=fashion_mnist,order=permuted,variant=cpu"),
    ("configs.pixels", "model=lstm,dataset=cifar10,variant=cpu"),
    ("configs.imdb", "model=gru,max_len=16"),
    ("configs.shakespeare", "model=lstm,seq_len=8"),
] + [(m, None) for m in EXPERIMENT_CONFIGS if m.startswith("configs.images")]


@pytest.mark.parametrize("module,arg", TFDS_CONFIGS, ids=[f"{m}:{a}" for m, a in TFDS_CONFIGS])
def test_tfds_configs_train_under_mock_data(tmp_path, module, arg):
    config = _load(module, arg)
    config.steps, config.batch_size, config.progress = 3, 8, False
    config.eval_every = config.checkpoint_every = config.log_every = 3
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
        summary = train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 3
    assert summary["eval"]["loss"] > 0
