"""Generated tasks (adding, copy, digits) and the pixel-sequence views."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data.base import ArraySource
from cnn_rnn.data.registry import build_data
from cnn_rnn.data.sequential import pixel_permutation, pixel_view
from cnn_rnn.data.synthetic import digit_glyphs
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec
from cnn_rnn.training import losses


def build(name: str, seed: int = 0, **kwargs):
    return build_data({"name": name, **kwargs}, seed=seed)


def assert_batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def concat_eval(source, batch_size: int) -> dict:
    """The eval set as arrays, padding rows dropped."""
    batches = list(source.eval_batches(batch_size))
    keep = np.concatenate([b["weights"] for b in batches]) > 0
    return {k: np.concatenate([b[k] for b in batches])[keep] for k in batches[0]}


# --- adding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("placement", ["halves", "anywhere"])
def test_adding_definition(placement):
    length, n = 12, 500
    source = build("adding", length=length, placement=placement)
    assert source.spec.kind == "regression" and source.spec.input_shape == (length, 2)
    batch = source.train_batch(0, n)
    x, y = batch["inputs"], batch["targets"]
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (n, 1)
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(1), 2)
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(1), rtol=1e-6)
    first_half = markers[:, : length // 2].sum(1)
    if placement == "halves":
        np.testing.assert_array_equal(first_half, 1)
    else:  # both markers in one half happens about half the time
        assert (first_half == 2).any() and (first_half == 0).any() and (first_half == 1).any()


@pytest.mark.parametrize("placement", ["halves", "anywhere"])
def test_adding_baseline_predicting_one(placement):
    source = build("adding", length=20, placement=placement)
    batch = source.train_batch(0, 4000)
    loss_sum, metrics = losses.regression(jnp.ones((4000, 1)), batch)
    mse = float(loss_sum) / 4000
    # Var of (X1 + X2 - 1)^2 is 7/180, so the standard error over 4000 samples is ~0.003.
    assert abs(mse - 1 / 6) < 0.0125
    assert source.spec.baseline == pytest.approx(1 / 6) and source.spec.baseline_metric == "loss"


# --- copy -------------------------------------------------------------------------------------

def test_copy_layout():
    length, n = 7, 64
    source = build("copy", length=length)
    spec = source.spec
    assert spec.kind == "sequence_classification" and spec.num_outputs == 9
    assert spec.input_shape == (length + 20, 10)
    batch = source.train_batch(0, n)
    x = batch["inputs"]
    assert x.dtype == np.float32 and x.shape == (n, length + 20, 10)
    np.testing.assert_array_equal(x.sum(-1), 1)  # one-hot
    tokens = x.argmax(-1)
    symbols = tokens[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    np.testing.assert_array_equal(tokens[:, 10 : length + 9], 0)  # T - 1 blanks
    np.testing.assert_array_equal(tokens[:, length + 9], 9)  # the delimiter
    np.testing.assert_array_equal(tokens[:, length + 10 :], 0)  # 10 blanks
    targets = batch["targets"]
    assert targets.dtype == np.int32 and targets.shape == (n, length + 20)
    np.testing.assert_array_equal(targets[:, :-10], 0)
    np.testing.assert_array_equal(targets[:, -10:], symbols)
    expected_weights = np.zeros(length + 20)
    expected_weights[-10:] = 1
    np.testing.assert_array_equal(batch["accuracy_weights"], np.broadcast_to(expected_weights,
                                                                             (n, length + 20)))


def test_copy_memoryless_baseline():
    length, n = 30, 16
    source = build("copy", length=length)
    batch = source.train_batch(0, n)
    # Memoryless: certain of the blank before the recall part, uniform over 8 symbols in it.
    logits = np.full((n, length + 20, 9), -1e4, np.float32)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    loss_sum, metrics = losses.sequence_classification(jnp.asarray(logits), batch)
    mean_loss = losses.finalize(metrics)["loss"]
    expected = 10 * math.log(8) / (length + 20)
    assert mean_loss == pytest.approx(expected, rel=1e-5)
    assert source.spec.baseline == pytest.approx(expected)
    # Accuracy counts the recalled symbols only: 10 per example.
    assert float(metrics["accuracy"][1]) == 10 * n


# --- digits -----------------------------------------------------------------------------------

def test_digits_images_hold_the_glyph_of_their_label():
    source = build("digits", noise=0.0)
    batch = source.train_batch(0, 32)
    x, y = batch["inputs"], batch["targets"]
    assert x.shape == (32, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert source.spec.input_shape == (16, 16, 1) and source.spec.num_outputs == 10
    ink_pixels = (x[..., 0] > 0).sum((1, 2))
    np.testing.assert_array_equal(ink_pixels, digit_glyphs()[y].sum((1, 2)))


# --- determinism and evaluation ---------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", [("adding", {"length": 9}), ("copy", {"length": 5}),
                                         ("digits", {"pixels": "permuted"})])
def test_deterministic_by_seed_and_step(name, kwargs):
    a, b, other = build(name, 0, **kwargs), build(name, 0, **kwargs), build(name, 1, **kwargs)
    assert_batches_equal(a.train_batch(5, 8), b.train_batch(5, 8))
    assert not np.array_equal(a.train_batch(5, 8)["inputs"], a.train_batch(6, 8)["inputs"])
    assert not np.array_equal(a.train_batch(5, 8)["inputs"], other.train_batch(5, 8)["inputs"])
    # A fixed eval set, shared by training seeds and distinct from the training stream.
    eval_a, eval_other = concat_eval(a, 8), concat_eval(other, 8)
    assert_batches_equal(eval_a, eval_other)
    assert_batches_equal(eval_a, concat_eval(a, 8))
    assert not np.array_equal(eval_a["inputs"][:8], a.train_batch(0, 8)["inputs"])


def test_eval_batches_pad_with_zero_weights():
    source = build("adding", length=5, num_eval=10)
    batches = list(source.eval_batches(4))
    assert [b["inputs"].shape for b in batches] == [(4, 5, 2)] * 3
    np.testing.assert_array_equal(batches[-1]["weights"], [1, 1, 0, 0])


# --- pixel views ------------------------------------------------------------------------------

def mnist1d_like(seed: int = 0) -> ArraySource:
    rng = np.random.default_rng(123)
    train = {"inputs": rng.normal(size=(20, 40, 1)).astype(np.float32),
             "targets": rng.integers(0, 10, 20).astype(np.int32)}
    test = {"inputs": rng.normal(size=(6, 40, 1)).astype(np.float32),
            "targets": rng.integers(0, 10, 6).astype(np.int32)}
    spec = TaskSpec(kind="classification", num_outputs=10, input_shape=(40, 1))
    return ArraySource(spec, train, test, seed)


def test_pixel_views_on_sequences():
    base = mnist1d_like()
    sequential = pixel_view(base, "sequential")
    assert sequential.spec.input_shape == (40, 1)
    assert_batches_equal(sequential.train_batch(3, 4), base.train_batch(3, 4))
    perm = pixel_permutation(40, 7)
    assert sorted(perm) == list(range(40)) and not np.array_equal(perm, np.arange(40))
    for seed in (0, 1):  # the permutation does not depend on the training seed
        inner = mnist1d_like(seed)
        permuted = pixel_view(inner, "permuted", permutation_seed=7)
        np.testing.assert_array_equal(permuted.train_batch(3, 4)["inputs"],
                                      inner.train_batch(3, 4)["inputs"][:, perm])
        np.testing.assert_array_equal(concat_eval(permuted, 4)["inputs"],
                                      inner.test["inputs"][:, perm])
    assert not np.array_equal(pixel_permutation(40, 8), perm)


def test_pixel_views_on_images():
    images = build("digits", seed=3)
    sequential = build("digits", seed=3, pixels="sequential")
    permuted = build("digits", seed=3, pixels="permuted", permutation_seed=5)
    assert sequential.spec.input_shape == permuted.spec.input_shape == (256, 1)
    raster = images.train_batch(2, 4)["inputs"].reshape(4, 256, 1)
    np.testing.assert_array_equal(sequential.train_batch(2, 4)["inputs"], raster)
    np.testing.assert_array_equal(sequential.train_batch(2, 4)["inputs"][0, 16:32, 0],
                                  images.train_batch(2, 4)["inputs"][0, 1, :, 0])  # row 1
    perm = pixel_permutation(256, 5)
    np.testing.assert_array_equal(permuted.train_batch(2, 4)["inputs"], raster[:, perm])
    eval_raster = concat_eval(sequential, 64)["inputs"]
    np.testing.assert_array_equal(concat_eval(permuted, 64)["inputs"], eval_raster[:, perm])


def test_pixel_view_rejects_sequence_targets():
    with pytest.raises(ConfigError) as e:
        pixel_view(build("copy", length=3), "permuted")
    assert e.value.field == "data.pixels"


# --- bad values -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,field", [
    ("adding", {"placement": "middle"}, "data.placement"),
    ("adding", {"length": 1}, "data.length"),
    ("adding", {"length": "100"}, "data.length"),
    ("adding", {"num_eval": 0}, "data.num_eval"),
    ("copy", {"length": 0}, "data.length"),
    ("digits", {"pixels": "spiral"}, "data.pixels"),
    ("digits", {"pixels": "permuted", "permutation_seed": -1}, "data.permutation_seed"),
    ("digits", {"size": 10}, "data.size"),
    ("digits", {"noise": -0.1}, "data.noise"),
    ("adding", {"T": 10}, "data.T"),  # unknown kwarg: the registry's check
])
def test_bad_values_name_the_field(name, kwargs, field):
    with pytest.raises(ConfigError) as e:
        build(name, **kwargs)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_bad_choice_lists_accepted_values():
    with pytest.raises(ConfigError, match="halves, anywhere"):
        build("adding", placement="middle")
