"""tfds-backed sources under `tfds.testing.mock_data`, and the unprepared-dataset errors.

`mock_data(policy=MockPolicy.USE_CODE)` needs neither TensorFlow nor network: it builds the
dataset's features from the builder code and serves random examples through `tfds.data_source`
(the same `num_examples` examples for every split).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_rnn.data import tfds as tfds_sources
from cnn_rnn.data import tfds_prepare
from cnn_rnn.data.registry import build_data
from cnn_rnn.data.sequential import pixel_permutation
from cnn_rnn.errors import ConfigError

NUM_EXAMPLES = 12


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def build(name: str, seed: int = 0, **kwargs):
    return build_data({"name": name, **kwargs}, seed=seed)


def concat_eval(source, batch_size: int) -> dict:
    batches = list(source.eval_batches(batch_size))
    keep = np.concatenate([b["weights"] for b in batches]) > 0
    return {k: np.concatenate([b[k] for b in batches])[keep] for k in batches[0]}


def assert_deterministic(name: str, **kwargs) -> None:
    a, b, other = build(name, 0, **kwargs), build(name, 0, **kwargs), build(name, 1, **kwargs)
    for key, value in a.train_batch(4, 5).items():
        np.testing.assert_array_equal(value, b.train_batch(4, 5)[key])
    assert not np.array_equal(a.train_batch(4, 5)["inputs"], a.train_batch(5, 5)["inputs"])
    assert not np.array_equal(a.train_batch(4, 5)["inputs"], other.train_batch(4, 5)["inputs"])


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_image_sources(mock_tfds, name, shape):
    source = build(name)
    spec = source.spec
    assert (spec.kind, spec.num_outputs, spec.input_shape) == ("classification", 10, shape)
    batch = source.train_batch(0, 5)
    assert batch["inputs"].shape == (5, *shape) and batch["inputs"].dtype == np.float32
    assert batch["targets"].dtype == np.int32 and batch["targets"].max() < 10
    np.testing.assert_array_equal(batch["weights"], 1)
    batches = list(source.eval_batches(5))
    assert len(batches) == 3 and batches[-1]["weights"].sum() == NUM_EXAMPLES - 10
    # Mock splits hold the same examples, so the eval set has the train split's statistics.
    inputs = concat_eval(source, 5)["inputs"].reshape(-1, shape[-1])
    np.testing.assert_allclose(inputs.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(inputs.std(0), 1, atol=1e-4)
    raw = build(name, normalize=False).train_batch(0, 5)["inputs"]
    assert raw.min() >= 0 and raw.max() <= 1 and raw.max() > 0.9
    assert_deterministic(name)


def test_image_pixel_views(mock_tfds):
    images = build("mnist", seed=2)
    sequential = build("mnist", seed=2, pixels="sequential")
    assert sequential.spec.input_shape == (784, 1)
    raster = images.train_batch(1, 4)["inputs"].reshape(4, 784, 1)
    np.testing.assert_array_equal(sequential.train_batch(1, 4)["inputs"], raster)
    perm = pixel_permutation(784, 3)
    eval_raster = concat_eval(sequential, 5)["inputs"]
    for seed in (2, 9):  # the same permutation whatever the training seed, train and eval
        permuted = build("mnist", seed=seed, pixels="permuted", permutation_seed=3)
        inner = build("mnist", seed=seed, pixels="sequential").train_batch(1, 4)["inputs"]
        np.testing.assert_array_equal(permuted.train_batch(1, 4)["inputs"], inner[:, perm])
        np.testing.assert_array_equal(concat_eval(permuted, 5)["inputs"], eval_raster[:, perm])
    scifar = build("cifar10", pixels="sequential")
    assert scifar.spec.input_shape == (1024, 3)
    assert scifar.train_batch(0, 2)["inputs"].shape == (2, 1024, 3)


def test_imdb_reviews(mock_tfds):
    max_len = 16
    source = build("imdb_reviews", max_len=max_len)
    spec = source.spec
    assert (spec.kind, spec.num_outputs, spec.input_shape) == ("classification", 2, (16, 256))
    batch = source.train_batch(0, 5)
    assert batch["inputs"].dtype == np.float32 and batch["inputs"].shape == (5, 16, 256)
    assert batch["mask"].dtype == bool and batch["mask"].shape == (5, 16)
    np.testing.assert_array_equal(batch["inputs"].sum(-1), batch["mask"])  # one-hot where real
    # The eval set is the split in order: decoding it gives back each review's first bytes.
    ds = tfds.data_source("imdb_reviews", split="test")
    evaluated = concat_eval(source, 5)
    for i in range(NUM_EXAMPLES):
        text = tfds_sources.to_bytes(ds[i]["text"])[:max_len]
        length = int(evaluated["mask"][i].sum())
        assert length == len(text)
        assert bytes(evaluated["inputs"][i, :length].argmax(-1).astype(np.uint8)) == text
        assert evaluated["targets"][i] == ds[i]["label"]
    assert_deterministic("imdb_reviews", max_len=max_len)


def test_tiny_shakespeare(mock_tfds):
    seq_len = 8
    source = build("tiny_shakespeare", seq_len=seq_len)
    spec = source.spec
    assert spec.kind == "sequence_classification" and spec.input_shape == (seq_len, 256)
    assert spec.num_outputs == 256 and spec.baseline_metric == "loss" and spec.baseline > 0
    batch = source.train_batch(0, 5)
    x, y = batch["inputs"], batch["targets"]
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.shape == (5, seq_len)
    np.testing.assert_array_equal(x.sum(-1), 1)
    np.testing.assert_array_equal(x.argmax(-1)[:, 1:], y[:, :-1])  # next-byte targets
    # Eval windows tile the text, each target the byte after its input.
    ds = tfds.data_source("tiny_shakespeare", split="test")
    text = np.frombuffer(b"".join(tfds_sources.to_bytes(ds[i]["text"]) for i in range(len(ds))),
                         np.uint8)
    evaluated = concat_eval(source, 4)
    count = (len(text) - 1) // seq_len
    assert len(evaluated["inputs"]) == count
    np.testing.assert_array_equal(evaluated["inputs"].argmax(-1).ravel(), text[: count * seq_len])
    np.testing.assert_array_equal(evaluated["targets"].ravel(), text[1 : count * seq_len + 1])
    assert_deterministic("tiny_shakespeare", seq_len=seq_len)
    with pytest.raises(ConfigError) as e:
        build("tiny_shakespeare", seq_len=10**6)
    assert e.value.field == "data.seq_len"


# --- unprepared datasets ----------------------------------------------------------------------

def test_unprepared_without_tensorflow_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "preparation_modules_missing", lambda: ["tensorflow"])
    data_dir = tmp_path / "data"
    with pytest.raises(ConfigError) as e:
        build("mnist", data_dir=str(data_dir))
    message = str(e.value)
    assert e.value.field == "data.data_dir" and "\n" not in message
    # tfds 4.9.10 needs importlib_resources to prepare on Python >= 3.11 (undeclared there).
    assert "pip install tensorflow importlib_resources &&" in message
    assert str(data_dir) in message
    assert "tfds.builder('mnist'" in message
    assert "download_and_prepare(file_format='array_record')" in message
    assert not data_dir.exists()  # nothing was written


def test_unprepared_with_tensorflow_prepares_as_array_record(tmp_path, monkeypatch):
    calls = []

    def fake_prepare(self, **kwargs):
        calls.append((self.name, kwargs))
        raise RuntimeError("stop: no network in tests")

    monkeypatch.setattr(tfds_prepare, "preparation_modules_missing", lambda: [])
    monkeypatch.setattr(tfds_prepare, "download_hosts", lambda builder: ["example.org"])
    monkeypatch.setattr(tfds_prepare, "unreachable_host", lambda hosts: None)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fake_prepare)
    with pytest.raises(RuntimeError, match="stop"):
        build("cifar10", data_dir=str(tmp_path))
    assert calls == [("cifar10", {"file_format": "array_record"})]


def test_prepared_as_tfrecord_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with pytest.raises(ConfigError, match="TFRecord") as e:
        build("mnist", data_dir=str(tmp_path))
    assert e.value.field == "data.data_dir"


# --- bad values (checked before any read) -----------------------------------------------------

@pytest.mark.parametrize("name,kwargs,field", [
    ("mnist", {"pixels": "spiral"}, "data.pixels"),
    ("cifar10", {"normalize": "yes"}, "data.normalize"),
    ("mnist", {"pixels": "permuted", "permutation_seed": 1.5}, "data.permutation_seed"),
    ("fashion_mnist", {"train_split": 3}, "data.train_split"),
    ("mnist", {"data_dir": 5}, "data.data_dir"),
    ("imdb_reviews", {"max_len": 0}, "data.max_len"),
    ("tiny_shakespeare", {"seq_len": -1}, "data.seq_len"),
    ("tiny_shakespeare", {"eval_split": ""}, "data.eval_split"),
    ("imdb_reviews", {"vocab": "bpe"}, "data.vocab"),
])
def test_bad_values_name_the_field(name, kwargs, field):
    with pytest.raises(ConfigError) as e:
        build(name, **kwargs)
    assert e.value.field == field
