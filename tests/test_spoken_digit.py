"""`data.name="spoken_digit"`: tfds' FSDD through the tfds path gives exactly the arrays the folder
source gives on the same recordings, in every split mode; its bad inputs are one `error:` line.

The tfds dataset is mocked (`tfds.testing.mock_data`) with generated chirps carrying FSDD file
names, served the way tfds serves `spoken_digit` (int16-valued int64 audio, class, filename).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.features import audio_feature

from cnn_rnn.data.chirps import make_tones, tone_clips
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from tests.test_bad_inputs import _assert_one_error_line, _run_in_process


@pytest.fixture(autouse=True)
def audio_feature_without_tensorflow(monkeypatch):
    """tfds builds an Audio feature with TensorFlow only to name its dtype (`tf.dtypes.as_dtype`);
    these tests serve already-decoded examples, so that one call is stood in for where TensorFlow
    is not installed (the real read is checked in docs/speech.md, "tfds spoken_digit")."""
    if importlib.util.find_spec("tensorflow") is None:
        monkeypatch.setattr(audio_feature, "tf", SimpleNamespace(
            dtypes=SimpleNamespace(as_dtype=np.dtype)))


class Examples(list):
    """A list of examples that answers like a tfds data source."""

    def __init__(self, examples, info):
        super().__init__(examples)
        self.dataset_info = info

    def __getitems__(self, indices):
        return [self[i] for i in indices]


def mocked(clips, rename=lambda name: name):
    """mock_data serving `clips` ((FSDD file name, float samples) pairs) as spoken_digit's split,
    each under the file name `rename(name)`."""
    def as_data_source(builder, split, **kwargs):
        names = builder.info.features["label"].names
        return Examples([{"audio": np.round(x * 32767).astype(np.int64),
                          "label": names.index(name.split("_")[0]),
                          "audio/filename": rename(name)} for name, x in clips], builder.info)

    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                  as_data_source_fn=as_data_source)


@pytest.mark.parametrize("data", [
    dict(split="official"),
    dict(split="speakers", test_speakers=("bob",)),
    dict(split="fraction", test_fraction=0.25),
    dict(split="official", max_seconds=0.3, truncate=True),
])
def test_tfds_source_equals_the_folder_source(tmp_path, data):
    folder = build_data({"name": "audio", "path": make_tones(str(tmp_path / "wav")), **data},
                        seed=0)
    with mocked(list(tone_clips())[::-1]):  # tfds' order is not the folder's
        served = build_data({"name": "spoken_digit", **data}, seed=0)
    assert served.sample_rate == folder.sample_rate == 8000
    assert served.spec.input_shape == folder.spec.input_shape
    # tfds names all ten digits; the chirps use three of them, with the same indices
    assert served.classes[:3] == folder.classes == ["0", "1", "2"]
    for part in ("train_clips", "test_clips"):
        assert ([(c.label, c.speaker, c.index) for c in getattr(served, part)]
                == [(c.label, c.speaker, c.index) for c in getattr(folder, part)])
    for arrays in ("train", "test"):
        for key in ("inputs", "mask", "targets"):
            np.testing.assert_array_equal(getattr(served, arrays)[key],
                                          getattr(folder, arrays)[key])
    batch = served.train_batch(0, 8)
    np.testing.assert_array_equal(batch["inputs"], folder.train_batch(0, 8)["inputs"])


def test_second_build_reads_the_cache(tmp_path, tfds_cache_root):
    with mocked(list(tone_clips(indices=6))):
        first = build_data({"name": "spoken_digit"}, seed=0)
    assert any(tfds_cache_root.rglob("meta.json"))
    with mocked([]):  # the split's length differs, so the stale cache is not used: an error
        with pytest.raises(ConfigError, match="data.tfds_split"):
            build_data({"name": "spoken_digit"}, seed=0)
    with mocked(list(tone_clips(indices=6))):
        again = build_data({"name": "spoken_digit"}, seed=0)
    np.testing.assert_array_equal(first.train["inputs"], again.train["inputs"])


def test_names_that_do_not_parse_allow_only_a_fraction_split():
    with mocked(list(tone_clips(indices=2)), rename=lambda name: name.replace("_", "-")):
        src = build_data({"name": "spoken_digit", "split": "fraction"}, seed=0)
        assert all(c.speaker is None for c in src.train_clips + src.test_clips)
        with pytest.raises(ConfigError, match=r"data\.split.*FSDD names"):
            build_data({"name": "spoken_digit", "split": "official"}, seed=0)


@pytest.mark.parametrize("data,field", [
    (dict(test_speakers=("nobody",), split="speakers"), "data.test_speakers"),
    (dict(tfds_split=""), "data.tfds_split"),
    (dict(max_seconds=0.2, truncate=False), "data.max_seconds"),
    (dict(split="leave_one_out"), "data.split"),
    (dict(sample_rate=16000), "data.sample_rate"),
])
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, capsys, data, field):
    workdir = tmp_path / "run"
    overrides = [f"--config.data.{k}={v if not isinstance(v, tuple) else ','.join(v)}"
                 for k, v in data.items()]
    with mocked(list(tone_clips(indices=6))):
        code, err = _run_in_process(["--config=configs/speech.py:source=tfds", *overrides],
                                    workdir, capsys)
    _assert_one_error_line(code, err, workdir, field)


class NoTensorFlow:
    """What tfds' lazy `tf` module does on a machine without TensorFlow."""

    def __getattr__(self, name):
        raise ModuleNotFoundError("No module named 'tensorflow'")


def test_without_tensorflow_it_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(audio_feature, "tf", NoTensorFlow())
    workdir = tmp_path / "run"
    with mocked(list(tone_clips(indices=6))):
        code, err = _run_in_process(["--config=configs/speech.py:source=tfds"], workdir, capsys)
    line = _assert_one_error_line(code, err, workdir, "data.name")
    assert "tensorflow-cpu" in line and "data.name='audio'" in line
