"""The MNIST-1D cache: what it reads back is what generation gives, to the bit; a bad file is
regenerated; an unwritable folder or `CNN_RNN_CACHE_DIR=off` only costs the speed-up."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnn_rnn.data import mnist1d

ARGS = (False, 400, 7)  # small: generation takes a fraction of a second


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist1d.CACHE_VAR, str(tmp_path / "cache"))
    mnist1d.load_mnist1d.cache_clear()
    yield tmp_path / "cache"
    mnist1d.load_mnist1d.cache_clear()


def _load():
    mnist1d.load_mnist1d.cache_clear()  # the in-process cache, so the file is what is read
    return mnist1d.load_mnist1d(*ARGS)


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in mnist1d.KEYS)


def test_cached_arrays_equal_generated_ones_and_are_read_back(cache_root, monkeypatch):
    generated = mnist1d.generate_mnist1d(*ARGS)
    first = _load()
    path = mnist1d.cache_file(*ARGS)
    assert os.path.dirname(path) == str(cache_root / "mnist1d") and os.path.exists(path)
    assert _equal(first, generated)

    def fail(*args):
        raise AssertionError("generated again although cached")

    monkeypatch.setattr(mnist1d, "generate_mnist1d", fail)
    assert _equal(_load(), generated)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary left


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape"])
def test_a_bad_cache_file_is_regenerated_and_replaced(cache_root, damage):
    generated = _load()
    path = mnist1d.cache_file(*ARGS)
    if damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(100)
    else:
        np.savez(path, **{k: v[:3] for k, v in generated.items()})
    assert _equal(_load(), generated)
    assert mnist1d.read_cached(path, ARGS[1]) is not None  # replaced by a good one


def test_an_unwritable_folder_or_off_only_costs_the_speed_up(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(mnist1d.CACHE_VAR, str(blocker))
    assert _equal(_load(), mnist1d.generate_mnist1d(*ARGS))
    monkeypatch.setenv(mnist1d.CACHE_VAR, "off")
    assert mnist1d.cache_file(*ARGS) is None
    assert _equal(_load(), mnist1d.generate_mnist1d(*ARGS))
    mnist1d.load_mnist1d.cache_clear()


def test_the_file_name_changes_with_every_argument_and_the_versions(cache_root, monkeypatch):
    names = {mnist1d.cache_file(*args) for args in
             [ARGS, (True, 400, 7), (False, 500, 7), (False, 400, 8)]}
    assert len(names) == 4
    monkeypatch.setattr(mnist1d.importlib.metadata, "version", lambda package: "9.9")
    assert mnist1d.cache_file(*ARGS) not in names
