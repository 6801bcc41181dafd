"""The decoded-split cache and offline-safe preparation (no TensorFlow, no network)."""

from __future__ import annotations

import json
import os
import socket
import time

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds

from cnn_rnn.data import tfds_cache, tfds_prepare
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError


@pytest.fixture
def mock_mnist(tfds_cache_root):
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
        yield tfds_cache_root


def count_decodes(monkeypatch) -> list[int]:
    calls = []
    real = tfds_cache.decode_split

    def counting(ds, convert, chunk=tfds_cache.CHUNK):
        calls.append(len(ds))
        return real(ds, convert, chunk=7)  # several chunks even at this size

    monkeypatch.setattr(tfds_cache, "decode_split", counting)
    return calls


def batches(source):
    return [source.train_batch(s, 8) for s in range(3)] + list(source.eval_batches(8))


def assert_equal(a, b):
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_second_build_reads_the_cache_and_gives_the_same_batches(mock_mnist, monkeypatch):
    calls = count_decodes(monkeypatch)
    uncached = batches(build_data({"name": "mnist", "cache": False}, seed=0))
    assert calls == [30, 30] and not mock_mnist.exists()  # cache=False writes nothing
    first = batches(build_data({"name": "mnist"}, seed=0))
    assert calls == [30, 30, 30, 30]
    folders = sorted(os.listdir(mock_mnist))
    assert len(folders) == 2 and all(f.startswith(("train-", "test-")) for f in folders)
    second = build_data({"name": "mnist"}, seed=0)
    assert calls == [30, 30, 30, 30]  # nothing decoded again
    assert isinstance(second.inner.train["inputs"], np.memmap)
    assert_equal(first, uncached)
    assert_equal(batches(second), uncached)


@pytest.mark.parametrize("damage", ["meta", "npy", "version"])
def test_an_invalid_or_partial_cache_is_rebuilt(mock_mnist, monkeypatch, damage):
    expected = batches(build_data({"name": "mnist"}, seed=0))
    folder = next(p for p in mock_mnist.iterdir() if p.name.startswith("train-"))
    if damage == "meta":
        (folder / "meta.json").write_text("{trunc")
    elif damage == "npy":
        with open(folder / "image.npy", "r+b") as f:
            f.truncate(100)
    else:
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "version": "0.0.1"}))
    (mock_mnist / "train-x.tmp.dead").mkdir()  # an interrupted write's leftover is ignored
    calls = count_decodes(monkeypatch)
    assert_equal(batches(build_data({"name": "mnist"}, seed=0)), expected)
    assert calls == [30]  # only the damaged split was decoded again
    assert json.loads((folder / "meta.json").read_text())["version"] != "0.0.1"


def test_a_read_only_cache_root_only_costs_speed(mock_mnist, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tfds_cache, "write_cache", refuse)
    source = build_data({"name": "mnist"}, seed=0)
    assert source.train_batch(0, 4)["inputs"].shape == (4, 28, 28, 1)


def test_a_remote_data_dir_is_decoded_without_a_cache(mock_mnist, monkeypatch, tmp_path):
    monkeypatch.setattr(tfds_cache, "default_cache_root", lambda ds: "gs://bucket/mnist/3.0.1")
    monkeypatch.chdir(tmp_path)
    calls = count_decodes(monkeypatch)
    build_data({"name": "mnist"}, seed=0)
    assert calls == [30, 30] and not (tmp_path / "gs:").exists()


# --- offline preparation ----------------------------------------------------------------------

class FakeBuilder:
    """What prepare() uses of a tfds builder; counts download attempts."""

    def __init__(self, data_dir, fail_with=None):
        self.data_dir = str(data_dir / "mnist" / "3.0.1")
        self.url_infos = {"https://example.org/mnist/train.gz": None}
        self.fail_with = fail_with
        self.calls = 0

    def download_and_prepare(self, file_format):
        self.calls += 1
        downloads = os.path.join(os.path.dirname(os.path.dirname(self.data_dir)), "downloads")
        os.makedirs(downloads, exist_ok=True)
        open(os.path.join(downloads, "example.org_mnist.gz.tmp.0a1b"), "w").close()
        os.makedirs(os.path.join(os.path.dirname(self.data_dir), "incomplete.AB12_3.0.1"))
        raise self.fail_with


def test_offline_fails_fast_with_one_line_and_no_download(tmp_path, monkeypatch):
    tried = []

    def no_network(address, timeout=None):
        tried.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(tfds_prepare, "preparation_modules_missing", lambda: [])
    monkeypatch.setattr(socket, "create_connection", no_network)
    builder = FakeBuilder(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        tfds_prepare.prepare(builder, "mnist", str(tmp_path))
    assert time.monotonic() - t0 < 1.0 and builder.calls == 0
    assert tried == [(("storage.googleapis.com", 443), tfds_prepare.CONNECT_TIMEOUT_S)]
    message = str(e.value)
    assert e.value.field == "data.data_dir" and "\n" not in message
    for part in ("storage.googleapis.com is unreachable", "prepare it on a machine with network",
                 "pip install tensorflow importlib_resources",
                 f"copy the folder {builder.data_dir}", "$TFDS_DATA_DIR"):
        assert part in message
    assert not any(tmp_path.iterdir())


def test_a_download_that_fails_midway_leaves_nothing_half_written(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "preparation_modules_missing", lambda: [])
    monkeypatch.setattr(tfds_prepare, "unreachable_host", lambda hosts: None)
    builder = FakeBuilder(tmp_path, requests.exceptions.ConnectionError("Max retries exceeded"))
    with pytest.raises(ConfigError, match="the download failed: ConnectionError"):
        tfds_prepare.prepare(builder, "mnist", str(tmp_path))
    assert builder.calls == 1
    left = [os.path.join(d, f) for d, dirs, files in os.walk(tmp_path) for f in dirs + files]
    assert not [p for p in left if ".tmp." in p or "incomplete." in p]
    # Any other failure is not called a network problem, but is cleaned up all the same.
    builder = FakeBuilder(tmp_path, KeyError("bad checksum"))
    with pytest.raises(KeyError):
        tfds_prepare.prepare(builder, "mnist", str(tmp_path))
    assert not any(".tmp." in f for f in os.listdir(tmp_path / "downloads"))


def test_download_hosts_and_reachability(monkeypatch):
    builder = FakeBuilder.__new__(FakeBuilder)
    builder.url_infos = {"https://a.org/x": None, "https://a.org/y": None, "http://b.net/z": None}
    assert tfds_prepare.download_hosts(builder) == ["storage.googleapis.com", "a.org", "b.net"]

    class NoResources:
        @property
        def url_infos(self):
            raise ModuleNotFoundError("No module named 'importlib_resources'")

    assert tfds_prepare.download_hosts(NoResources()) == ["storage.googleapis.com"]

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout=None):
        if address[0] == "b.net":
            raise TimeoutError("timed out")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert tfds_prepare.unreachable_host(["a.org"]) is None
    assert tfds_prepare.unreachable_host(["a.org", "b.net"]) == "b.net"
