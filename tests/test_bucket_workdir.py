"""A workdir on a bucket (`gs://`), without network: the whole write/resume path, and offline.

The bucket is a fake `gs` file system registered with fsspec, the layer etils.epath (and so
Orbax) uses for gs:// when TensorFlow is absent: objects live under a temporary folder, appending
to an object is refused as on a real object store, and TensorStore's GCS driver (Orbax's array
writes) is pointed at the same folder. Every file of the run must reach the bucket through
`cnn_rnn.paths`; nothing may appear in a local folder named `gs:`.
"""

import importlib
import json
import os

import fsspec
import jax
import numpy as np
import pytest
from etils.epath import backend as epath_backend
from fsspec.implementations.local import LocalFileSystem

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.loop import train_and_evaluate
from tests.config_helpers import small_config


class FakeBucket(LocalFileSystem):
    """gs://BUCKET/KEY stored at ROOT/BUCKET/KEY; no appends, as on an object store."""

    protocol = ("gs", "gcs")
    root = ""

    @classmethod
    def _strip_protocol(cls, path):
        path = fsspec.utils.stringify_path(path)
        if path.startswith(cls.root + "/"):
            return path.rstrip("/")
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return os.path.join(cls.root, path).rstrip("/")

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode or "+" in mode:
            raise OSError(f"an object store cannot open {path} in mode {mode!r}")
        return super()._open(path, mode=mode, **kwargs)

    def glob(self, path, **kwargs):  # keys as gcsfs gives them: BUCKET/KEY
        return [p[len(self.root) + 1:] for p in super().glob(path, **kwargs)]


class OfflineBucket(LocalFileSystem):
    """gs:// with no network: every call fails as gcsfs does offline."""

    protocol = ("gs", "gcs")

    def __init__(self, *args, **kwargs):
        raise OSError("Cannot connect to host storage.googleapis.com:443 ssl:default "
                      "[Temporary failure in name resolution]")


def _use(monkeypatch, cls):
    from cnn_rnn import paths

    monkeypatch.setattr(paths, "CLIENTS", {})  # the fake stands in for gcsfs and its client
    for name in ("gs", "gcs"):
        monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, name, cls)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_epath_cache():
    yield
    epath_backend.fsspec_backend._get_filesystem.cache_clear()


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The fake bucket's root folder; the test's working directory is another folder."""
    from orbax.checkpoint._src.path import gcs_utils

    root = tmp_path / "bucket_store"
    root.mkdir()
    monkeypatch.setattr(FakeBucket, "root", str(root))
    _use(monkeypatch, FakeBucket)

    def tensorstore_spec(path):
        bucket_name, key = gcs_utils.parse_gcs_path(path, add_trailing_slash=False)
        return {"driver": "file", "path": os.path.join(str(root), bucket_name, key)}

    monkeypatch.setattr(gcs_utils, "get_kvstore_for_gcs", tensorstore_spec)
    monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return root


def _config(steps):
    return small_config(steps, batch_size=16, checkpoint_every=2, eval_every=2)


def _records(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow  # three short trainings: about a minute on an idle 2-core CPU
def test_a_bucket_workdir_writes_and_resumes_like_a_local_one(bucket, tmp_path):
    local = str(tmp_path / "local")
    expected = train_and_evaluate(_config(6), local)

    workdir = "gs://fake-bucket/runs/cnn"
    first = train_and_evaluate(_config(4), workdir)  # stopped at 4, then resumed to 6
    assert first["step"] == 4
    resumed = train_and_evaluate(_config(6), workdir)

    stored = bucket / "fake-bucket" / "runs" / "cnn"
    assert sorted(p.name for p in stored.iterdir()) == [
        "checkpoints", "config.json", "metrics.jsonl", "summary.json", "tensorboard"]  # no .lock
    assert sorted(os.listdir(stored / "checkpoints")) == ["2", "4", "6"]
    assert os.listdir(stored / "tensorboard") and all(
        os.path.getsize(stored / "tensorboard" / f) > 0 for f in os.listdir(stored / "tensorboard"))
    assert not os.path.exists("gs:") and os.listdir(".") == []  # nothing local

    # The resumed bucket run reports and records what the uninterrupted local run did.
    assert resumed["eval"] == pytest.approx(expected["eval"], rel=1e-6)
    local_rows = _records(open(os.path.join(local, "metrics.jsonl")).read())
    bucket_rows = _records((stored / "metrics.jsonl").read_text())
    assert [(r["step"], r["split"]) for r in bucket_rows] == [
        (r["step"], r["split"]) for r in local_rows]
    for a, b in zip(bucket_rows, local_rows, strict=True):
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if k != "split"} == pytest.approx(
            {k: v for k, v in b.items() if k != "split"}, rel=1e-6)

    # The checkpoint in the bucket holds the same parameters as the local one.
    from cnn_rnn.training.checkpoints import Checkpointer

    def params(directory):
        ckpt = Checkpointer(directory, 3)
        try:
            meta = ckpt.read_meta(6)
            return meta["state_sha256"]
        finally:
            ckpt.close()

    assert params(workdir + "/checkpoints") == params(os.path.join(local, "checkpoints"))
    assert jax.device_count() == 8 and np.isfinite(resumed["eval"]["loss"])


def test_a_held_bucket_lock_refuses_a_second_run(bucket):
    store = bucket / "fake-bucket" / "held"
    store.mkdir(parents=True)
    (store / ".lock").write_text("otherhost:123")
    with pytest.raises(ConfigError, match=r"otherhost:123.*best effort"):
        train_and_evaluate(_config(2), "gs://fake-bucket/held")
    assert os.listdir(store) == [".lock"]  # nothing written, the other run's lock kept


def test_a_bucket_without_its_client_libraries_is_one_line(tmp_path, monkeypatch):
    from cnn_rnn import paths

    monkeypatch.setattr(paths, "CLIENTS", {"gs://": ("no_such_client_xyz",)})
    with pytest.raises(ConfigError, match="needs no_such_client_xyz, not installed"):
        paths.check_reachable("gs://bucket/run")


def test_an_offline_bucket_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from tests.test_bad_inputs import _run_in_process

    _use(monkeypatch, OfflineBucket)
    monkeypatch.chdir(tmp_path)
    config = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs/mnist1d_cnn.py")
    code, err = _run_in_process([f"--config={config}", "--config.steps=2"],
                                "gs://no-network/run", capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: workdir: cannot reach gs://no-network/run: OSError: "
                               "Cannot connect"), lines[0]
    assert os.listdir(tmp_path) == []
    with capsys.disabled():
        print(f"\noffline gs://: {lines[0]}")


def test_entry_points_that_write_locally_refuse_a_bucket_in_one_line(capsys):
    from experiments import cli

    for command in ("experiments.sweep", "experiments.predict"):
        with pytest.raises(SystemExit) as info:
            cli.local_workdir("gs://b/x", command)
        assert info.value.code == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --workdir: gs://b/x is a bucket, and "
                                                   f"{command} reads and writes a local folder")
    cli.local_workdir("/tmp/x", "experiments.sweep")  # a local folder passes


@pytest.mark.parametrize("argv", [
    ["experiments.sweep", "--config=configs/sweeps/results_cpu.py", "--workdir=gs://b/x"],
    ["experiments.predict", "--workdir=gs://b/x", "--input=new.csv"],
    ["experiments.export"],  # a missing --workdir: one line (was an AttributeError)
])
def test_a_bucket_or_a_missing_workdir_is_one_line_before_anything_is_written(cli, argv):
    proc = cli(*argv, devices=1)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error: --workdir")], \
        proc.stderr
    assert not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "gs:"))
