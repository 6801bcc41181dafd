"""Every shipped config loads, validates and names real models and data; tfds-backed configs
train end to end under `tfds.testing.mock_data` (no TensorFlow, no network)."""

import ast
import glob
import importlib
import inspect
import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
from config_helpers import reset_flags

from cnn_rnn.data import synthetic
from cnn_rnn.data.registry import build_data, data_fields
from cnn_rnn.models.registry import model_fields
from cnn_rnn.sweep import Point, validate_points
from cnn_rnn.training.config import complete
from cnn_rnn.training.loop import build_run, train_and_evaluate
from experiments.config_catalog import EXAMPLE_OVERRIDES, fields_table, overrides_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT_CONFIGS = sorted(
    os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    # arrays.py needs the user's .npz, ltsf.py the ETT csv: tests/test_arrays.py and
    # tests/test_ltsf.py validate them with generated files; bai2018.py is a helper module.
    if not p.endswith(("__init__.py", "common.py", "presets.py", "bai2018.py", "arrays.py",
                       "ltsf.py")))
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
        if name in ("__init__", "ltsf"):  # ltsf: the ETT csv (tests/test_ltsf.py)
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


# The first config trains in the fast suite, the others (ResNet's too) in the slow one.
@pytest.mark.parametrize("module,arg", [
    (m, a) if i == 0 else pytest.param(m, a, marks=pytest.mark.slow)
    for i, (m, a) in enumerate(TFDS_CONFIGS)], ids=[f"{m}:{a}" for m, a in TFDS_CONFIGS])
def test_tfds_configs_train_under_mock_data(tmp_path, module, arg):
    config = _load(module, arg)
    config.steps, config.batch_size, config.progress = 3, 8, False
    config.eval_every = config.checkpoint_every = config.log_every = 3
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
        summary = train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 3
    assert summary["eval"]["loss"] > 0


# --- cadence that follows `steps`, and data fields settable from the command line ---------------

# The flag parsing of experiments/run.py (its config flag and cli's parser), printing the config.
PARSE = """
import sys
from experiments import run
from experiments.cli import _parse_flags
_parse_flags(sys.argv)
print(run._CONFIG.value.to_json())
"""


def _parsed(*args):
    proc = subprocess.run([sys.executable, "-c", PARSE, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _cadence(c):
    return (c["eval_every"], c["checkpoint_every"], c["log_every"],
            c["optimizer"]["warmup_steps"])


def test_steps_on_the_command_line_moves_the_cadence():
    default = json.loads(_load("configs.mnist1d_gru").to_json())
    assert default["steps"] == 2000 and _cadence(default) == (400, 400, 100, 100)
    moved = _parsed("--config=configs/mnist1d_gru.py", "--config.steps=600")
    assert moved["steps"] == 600
    # A fifth of the run; logs about 20 times (a divisor of checkpoint_every); same warmup share.
    assert _cadence(moved) == (120, 120, 30, 100 * 600 // 2000)
    assert moved["checkpoint_every"] % moved["log_every"] == 0


def test_a_field_set_on_the_command_line_is_kept():
    c = _parsed("--config=configs/mnist1d_gru.py", "--config.steps=600", "--config.eval_every=7",
                "--config.checkpoint_every=50", "--config.optimizer.warmup_steps=5")
    assert (c["eval_every"], c["checkpoint_every"], c["optimizer"]["warmup_steps"]) == (7, 50, 5)
    # log_every still derives: the largest divisor of 50 within a twentieth of 600 steps.
    assert c["log_every"] == max(d for d in range(1, 600 // 20 + 1) if 50 % d == 0) == 25


def test_data_fields_are_settable_on_the_command_line(tmp_path):
    c = _parsed("--config=configs/imdb.py", f"--config.data.data_dir={tmp_path}",
                "--config.data.eval_split=train[:10%]")
    assert c["data"]["data_dir"] == str(tmp_path) and c["data"]["eval_split"] == "train[:10%]"
    # Unset: the source's own default, listed.
    assert c["data"]["train_split"] == data_fields("imdb_reviews")["train_split"].default == "train"


@pytest.mark.parametrize("module", EXPERIMENT_CONFIGS)
def test_every_model_and_data_keyword_is_in_the_config(module):
    config = _load(module)
    for section, fields in ((config.model, model_fields(config.model.name)),
                            (config.data, data_fields(config.data.name))):
        assert set(section) == {"name", *fields}, sorted(set(fields) ^ (set(section) - {"name"}))
        for key, keyword in fields.items():
            value = section[key]
            assert value is None or keyword.kind is object or isinstance(value, keyword.kind), (
                key, value)


def test_a_data_field_left_none_takes_the_source_default():
    default = inspect.signature(synthetic.adding).parameters["length"].default
    source = build_data({"name": "adding", "length": None, "num_eval": None}, seed=0)
    assert source.spec.input_shape == (default, 2)


def test_steps_given_as_a_config_argument_moves_the_cadence():
    c = _load("configs.mnist1d", "model=gru,steps=600")
    assert (c.steps, *_cadence(json.loads(c.to_json()))) == (600, 120, 120, 30, 30)
    c.steps = 10  # in Python too: every derived field follows
    assert (c.eval_every, c.checkpoint_every, c.log_every, c.optimizer.warmup_steps) == (
        2, 2, 1, 10 * 100 // 2000)


# --- every constructor keyword reachable from the command line ----------------------------------

FAMILY_OVERRIDES = EXAMPLE_OVERRIDES  # one per model family that trains (docs/configs.md)


def _literal(value):
    """A flag value as config_flags reads it: a Python literal, else the string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


@pytest.mark.parametrize("family,config,field,value", FAMILY_OVERRIDES,
                         ids=[f[0] for f in FAMILY_OVERRIDES])
def test_a_constructor_keyword_set_on_the_command_line_reaches_the_object(family, config, field,
                                                                          value):
    cfg = complete(_parsed(f"--config={config}", f"--config.{field}={value}"))
    section, key = field.split(".")
    data, model, _ = build_run(cfg)
    built = model if section == "model" else data
    got = getattr(built, key, None)
    if got is None:  # a data source keeps its keywords in its own form: check the config
        got = cfg[section][key]
    assert (tuple(got) if isinstance(got, list) else got) == _literal(value), (family, got)


@pytest.mark.slow
@pytest.mark.parametrize("family,config,field,value", FAMILY_OVERRIDES,
                         ids=[f[0] for f in FAMILY_OVERRIDES])
def test_a_constructor_keyword_set_on_the_command_line_trains(tmp_path, family, config, field,
                                                               value):
    from experiments import cli
    from experiments import run as run_entry

    reset_flags()
    workdir = tmp_path / "run"
    cli.execute(run_entry.main, [
        "run", f"--config={config}", f"--config.{field}={value}", "--config.steps=2",
        "--config.batch_size=16", "--config.progress=false", f"--workdir={workdir}"])
    with open(workdir / "summary.json") as f:
        assert json.load(f)["step"] == 2
    with open(workdir / "config.json") as f:
        section, key = field.split(".")
        got = json.load(f)[section][key]
    assert (tuple(got) if isinstance(got, list) else got) == _literal(value), family


def test_extending_a_run_with_warmup_names_the_flag_that_keeps_it():
    from cnn_rnn.errors import ConfigError
    from cnn_rnn.training.run_record import check_same_run, run_identity

    config = _load("configs.mnist1d_gru")  # warmup 100 of 2000 steps, following `steps`
    first = complete(config)
    config.steps = 4000  # as --config.steps=4000 would: warmup moves to 200
    with pytest.raises(ConfigError, match=r"keep --config\.optimizer\.warmup_steps=100\b"):
        check_same_run({"config": run_identity(first)}, complete(config))
    config.optimizer.warmup_steps = 100
    check_same_run({"config": run_identity(first)}, complete(config))


def test_a_run_recorded_without_the_default_fields_is_the_same_run():
    from cnn_rnn.training.run_record import check_same_run, run_identity

    new = complete(_load("configs.mnist1d_gru"))
    old = run_identity(new)
    old["model"] = {k: old["model"][k] for k in ("name", "hidden", "num_layers")}
    old["data"] = {"name": "mnist1d", "shuffle_positions": False, "num_samples": None}
    check_same_run({"config": old}, new)
    old["model"]["unroll"] = 1  # a field that differs from the default is a different run
    with pytest.raises(ValueError, match=r"model\.unroll: 1 -> 2"):
        check_same_run({"config": old}, new)


def test_the_field_tables_of_the_docs_are_current():
    with open(os.path.join(ROOT, "docs", "configs.md")) as f:
        doc = f.read()
    assert fields_table() in doc and overrides_table() in doc, (
        "docs/configs.md is stale: regenerate its tables with python -m experiments.config_catalog")


def test_a_list_argument_takes_comma_separated_values():
    from configs.common import parse_arg

    defaults = dict(model="gru", columns=(), variant="paper", window=0)
    assert parse_arg("columns=a,b,window=48", defaults) == dict(
        model="gru", columns=("a", "b"), variant="paper", window=48)
    assert parse_arg("cpu,columns=x", defaults)["variant"] == "cpu"
    assert parse_arg("columns=", defaults)["columns"] == ()
    assert _load("configs.forecast", "series=my.csv,columns=a,b").data.columns == ("a", "b")
