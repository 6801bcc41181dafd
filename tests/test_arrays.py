"""`data.name="arrays"`: your own .npz, checked against the built-in sources it reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_rnn.data.mnist1d import load_mnist1d
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from cnn_rnn.sweep import Point, validate_points
from cnn_rnn.training.loop import train_and_evaluate
from configs import arrays as arrays_config
from tests.config_helpers import small_config


def build(seed: int = 0, **data):
    return build_data({"name": "arrays", **data}, seed=seed)


def eval_arrays(source, batch_size: int = 96) -> dict:
    batches = list(source.eval_batches(batch_size))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def assert_same_batches(a, b) -> None:
    assert a.spec.input_shape == b.spec.input_shape and a.spec.kind == b.spec.kind
    for step in (0, 3, 250):
        for key, value in a.train_batch(step, 16).items():
            np.testing.assert_array_equal(value, b.train_batch(step, 16)[key], err_msg=key)
    for key, value in eval_arrays(a).items():
        np.testing.assert_array_equal(value, eval_arrays(b)[key], err_msg=key)


@pytest.fixture
def mnist1d_npz(tmp_path):
    d = load_mnist1d()
    path = tmp_path / "mnist1d.npz"
    np.savez(path, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    return str(path)


def test_mnist1d_round_trip_gives_the_builtin_batches(mnist1d_npz):
    arrays = build(path=mnist1d_npz, normalize=False)
    assert arrays.spec.input_shape == (40, 1) and arrays.spec.num_outputs == 10
    assert_same_batches(arrays, build_data({"name": "mnist1d"}, seed=0))


def test_mnist_npz_matches_tfds_normalisation_and_pixel_views(tmp_path):
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        split = {s: tfds.data_source("mnist", split=s) for s in ("train", "test")}
        images = {s: np.stack([np.asarray(ds[i]["image"]) for i in range(len(ds))])
                  for s, ds in split.items()}
        labels = {s: np.array([ds[i]["label"] for i in range(len(ds))])
                  for s, ds in split.items()}
        path = tmp_path / "mnist.npz"  # Keras layout: uint8 [N, 28, 28], int labels
        np.savez(path, x_train=images["train"][..., 0], y_train=labels["train"],
                 x_test=images["test"][..., 0], y_test=labels["test"])
        for view in ({}, {"pixels": "permuted", "permutation_seed": 5}):
            assert_same_batches(build(path=str(path), **view), build_data(
                {"name": "mnist", **view}, seed=0))


def test_regression_sequences_and_overrides(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12, 3)).astype(np.float64)
    y = x.sum((1, 2))  # float targets: regression
    path = tmp_path / "seq.npz"
    np.savez(path, x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    source = build(path=str(path))
    spec = source.spec
    assert (spec.kind, spec.num_outputs, spec.input_shape) == ("regression", 1, (12, 3))
    np.testing.assert_allclose(spec.baseline, np.mean((y[20:] - y[:20].mean()) ** 2), rtol=1e-5)
    batch = source.train_batch(0, 5)
    assert batch["targets"].shape == (5, 1) and batch["targets"].dtype == np.float32
    # Normalised per channel with the train split's statistics, like the tfds images.
    train = np.concatenate([source.train_batch(s, 20)["inputs"] for s in range(1)])
    np.testing.assert_allclose(train.reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.reshape(-1, 3).std(0), 1, atol=1e-5)
    assert build(path=str(path), layout="images").spec.input_shape == (12, 3, 1)
    labels = tmp_path / "labels.npz"
    np.savez(labels, x_train=x[:20, :, 0], y_train=np.arange(20) % 4, x_test=x[20:, :, 0],
             y_test=np.arange(10) % 3)
    as_classes = build(path=str(labels))
    assert (as_classes.spec.kind, as_classes.spec.num_outputs) == ("classification", 4)
    assert as_classes.spec.input_shape == (12, 1)
    assert build(path=str(labels), task="regression").spec.kind == "regression"


def write(tmp_path, **arrays) -> str:
    rng = np.random.default_rng(1)
    base = dict(x_train=rng.normal(size=(8, 5)).astype(np.float32), y_train=np.arange(8) % 2,
                x_test=rng.normal(size=(4, 5)).astype(np.float32), y_test=np.arange(4) % 2)
    base.update(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


@pytest.mark.parametrize("arrays,kwargs,field,says", [
    ({"y_test": None}, {}, "data.path", "has no y_test"),
    ({"y_train": np.arange(7) % 2}, {}, "data.path", "x_train has 8 examples and y_train 7"),
    ({"x_test": np.full((4, 5), np.nan, np.float32)}, {}, "data.path", "x_test holds 20 NaN"),
    ({"x_train": np.array([["a"] * 5] * 8)}, {}, "data.path", "x_train has dtype <U1"),
    ({"x_train": np.ones((8, 6), np.float32)}, {}, "data.path", "differ in shape"),
    ({"y_train": np.ones(8) * 0.5}, {"task": "classification"}, "data.task", "integer labels"),
    ({}, {"layout": "images"}, "data.layout", "needs inputs with 3 or 4 axes"),
    ({}, {"task": "ranking"}, "data.task", "ranking"),
])
def test_bad_files_are_one_line_errors(tmp_path, arrays, kwargs, field, says):
    with pytest.raises(ConfigError) as e:
        build(path=write(tmp_path, **arrays), **kwargs)
    assert e.value.field == field and says in str(e.value) and "\n" not in str(e.value)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file") as e:
        build(path=str(tmp_path / "absent.npz"))
    assert e.value.field == "data.path"
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="cannot read"):
        build(path=str(tmp_path / "text.npz"))


@pytest.mark.slow  # two short training runs: ~30 s on 2 idle cores (the batch tests are fast)
def test_training_on_the_npz_equals_training_on_the_builtin_source(tmp_path, mnist1d_npz):
    summaries = []
    for name, data in (("builtin", {"name": "mnist1d"}),
                       ("npz", {"name": "arrays", "path": mnist1d_npz, "normalize": False})):
        config = small_config(4, batch_size=16, checkpoint_every=4, eval_every=4)
        config.data = data
        summaries.append(train_and_evaluate(config, str(tmp_path / name))["eval"])
    assert summaries[0] == summaries[1] and summaries[0]["accuracy"] > 0


def test_the_arrays_config_validates_for_images_and_sequences(mnist1d_npz):
    for arg in (f"path={mnist1d_npz},model=gru", f"path={mnist1d_npz},model=cnn1d,pixels=permuted"):
        validate_points([Point(arg, arrays_config.get_config(arg))])
    with pytest.raises(ValueError, match="path is required"):
        arrays_config.get_config("model=gru")
