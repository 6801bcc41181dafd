"""`data.name="audio"`: WAV decoding, padding and masks, every split mode, labels, resampling,
bad inputs (one `error:` line, nothing written), all on generated chirps."""

from __future__ import annotations

import os
import wave

import numpy as np
import pytest

from cnn_rnn.data.chirps import RATE, SPEAKERS, TONES, chirp, make_tones, tone_length
from cnn_rnn.data.registry import build_data
from cnn_rnn.data.wav import read_wav, resample, write_wav
from cnn_rnn.errors import ConfigError
from tests.test_bad_inputs import _assert_one_error_line, _run_in_process


@pytest.fixture
def tones(tmp_path):
    return make_tones(str(tmp_path / "tones"))


def build(path, **data):
    return build_data({"name": "audio", "path": path, **data}, seed=0)


def test_read_wav_decodes_16_bit_pcm_exactly(tmp_path):
    ints = np.array([0, 1, -1, 32767, -32768, 1234], np.int16)
    path = str(tmp_path / "x.wav")
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(ints.tobytes())
    x, rate = read_wav(path)
    assert rate == 16000 and x.dtype == np.float32
    np.testing.assert_array_equal(x, ints / 32768.0)


def test_waveforms_are_padded_with_zeros_and_masked(tones):
    src = build(tones, max_seconds=0.5)
    assert src.spec.input_shape == (4000, 1) and src.spec.num_outputs == len(TONES)
    for clips, arrays in ((src.train_clips, src.train), (src.test_clips, src.test)):
        for clip, x, m in zip(clips, arrays["inputs"][..., 0], arrays["mask"], strict=True):
            n = round(tone_length(clip.label, clip.speaker, clip.index) * RATE)
            assert m.sum() == n and m[:n].all()
            np.testing.assert_array_equal(x[:n], read_wav(clip.path)[0])
            assert not x[n:].any()
    batch = src.train_batch(3, 8)  # the mask travels with its clip through the shuffle
    assert batch["mask"].shape == (8, 4000)
    assert all(not x[~m].any() for x, m in zip(batch["inputs"][..., 0], batch["mask"],
                                                strict=True))


def test_official_split_tests_on_indices_0_to_4(tones):
    src = build(tones, split="official", max_seconds=0.5)
    assert {c.index for c in src.test_clips} == set(range(5))
    assert {c.index for c in src.train_clips} == {5, 6, 7}
    assert len(src.test["targets"]) == 5 * len(TONES) * len(SPEAKERS)
    labels = [src.classes[t] for t in src.test["targets"]]
    assert labels == [c.label for c in src.test_clips]


def test_fraction_split_is_disjoint_fixed_and_sized(tones):
    a = build(tones, split="fraction", test_fraction=0.25, max_seconds=0.5)
    b = build_data({"name": "audio", "path": tones, "split": "fraction",
                    "test_fraction": 0.25, "max_seconds": 0.5}, seed=7)
    n = len(TONES) * len(SPEAKERS) * 8
    test = {c.path for c in a.test_clips}
    assert len(test) == round(0.25 * n) and not test & {c.path for c in a.train_clips}
    assert test == {c.path for c in b.test_clips}  # the run's seed does not move the split


@pytest.mark.parametrize("speakers", [("bob",), "bob, cyd"])
def test_speaker_split_keeps_test_speakers_out_of_training(tones, speakers):
    src = build(tones, split="speakers", test_speakers=speakers, max_seconds=0.5)
    held = {"bob"} if isinstance(speakers, tuple) else {"bob", "cyd"}
    assert {c.speaker for c in src.test_clips} == held
    assert not held & {c.speaker for c in src.train_clips}
    assert len(src.test_clips) == len(held) * len(TONES) * 8


def test_class_subfolders_give_labels_and_speakers(tmp_path):
    for word, freq in (("yes", 500.0), ("no", 1500.0)):
        for speaker in ("s1", "s2"):
            for i in range(3):
                write_wav(str(tmp_path / word / f"{speaker}_nohash_{i}.wav"), chirp(freq, 0.2))
    src = build(str(tmp_path), split="speakers", test_speakers=("s2",), max_seconds=0.25)
    assert src.classes == ["no", "yes"]
    assert {c.speaker for c in src.test_clips} == {"s2"}
    assert sorted(src.test["targets"].tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ConfigError, match="data.split: 'official' needs FSDD names"):
        build(str(tmp_path), max_seconds=0.25)


def test_resampling_keeps_the_pitch_and_a_mismatch_is_an_error(tmp_path):
    folder = tmp_path / "mixed"
    make_tones(str(folder), indices=6)
    t = np.arange(3200) / 16000
    write_wav(str(folder / "1_dan_0.wav"), 0.5 * np.sin(2 * np.pi * 1000 * t), rate=16000)
    with pytest.raises(ConfigError, match=r"data.sample_rate: 1_dan_0.wav is at 16000 Hz"):
        build(str(folder), sample_rate=8000, max_seconds=0.5)
    src = build(str(folder), sample_rate=8000, resample=True, max_seconds=0.5, split="speakers",
                test_speakers=("dan",))
    x = src.test["inputs"][0, : int(src.test["mask"][0].sum()), 0]
    assert len(x) == 1600
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * 8000 / len(x) == pytest.approx(1000, abs=5)
    # FFT resampling of a whole number of periods is exact: compare with the 8 kHz sine.
    np.testing.assert_allclose(resample(np.sin(2 * np.pi * 1000 * t), 16000, 8000),
                               np.sin(2 * np.pi * 1000 * np.arange(1600) / 8000), atol=1e-5)


def test_long_clips_are_cut_only_when_asked(tones):
    src = build(tones, max_seconds=0.2, truncate=True)
    assert src.spec.input_shape == (1600, 1) and src.train["mask"].sum(1).max() == 1600
    with pytest.raises(ConfigError, match=r"data.max_seconds: \S+\.wav lasts 0.\d+ s > "):
        build(tones, max_seconds=0.2)


def _bad_folder(tmp_path, case):
    """A tone folder made bad in one way; returns (data overrides, text the error names)."""
    make_tones(str(tmp_path / "bad"), indices=6)
    if case == "no_wavs":
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "notes.txt").write_text("no audio")
        return dict(path=str(empty)), "data.path: "
    if case == "not_wav":
        (tmp_path / "bad" / "0_ann_9.wav").write_text("this is not audio")
        return {}, "0_ann_9.wav: not a readable WAV file"
    if case == "truncated":
        path = tmp_path / "bad" / "0_ann_9.wav"
        write_wav(str(path), chirp(300, 0.3))
        path.write_bytes(path.read_bytes()[:-500])
        return {}, "0_ann_9.wav is truncated"
    if case == "stereo":
        write_wav(str(tmp_path / "bad" / "0_ann_9.wav"), chirp(300, 0.3), channels=2)
        return {}, "0_ann_9.wav has 2 channels"
    if case == "24_bit":
        write_wav(str(tmp_path / "bad" / "0_ann_9.wav"), chirp(300, 0.3), width=3)
        return {}, "0_ann_9.wav has 24-bit samples"
    if case == "labels":
        write_wav(str(tmp_path / "bad" / "hello.wav"), chirp(300, 0.3))
        return {}, "data.labels: hello.wav"
    if case == "speaker":
        return dict(split="speakers", test_speakers=("zed",)), "data.test_speakers: no recordings"
    if case == "too_long":
        return dict(truncate=False), "data.max_seconds: "
    raise AssertionError(case)


BAD = ["no_wavs", "not_wav", "truncated", "stereo", "24_bit", "labels", "speaker", "too_long"]


@pytest.mark.parametrize("case", BAD)
def test_bad_audio_is_one_error_line_and_nothing_written(tmp_path, capsys, case):
    overrides, text = _bad_folder(tmp_path, case)
    data = {"path": str(tmp_path / "bad"), "split": "official", "max_seconds": 0.3,
            "truncate": True, **overrides}
    argv = ["--config=configs/speech.py:model=gru"]
    argv += [f"--config.data.{k}={v if not isinstance(v, tuple) else repr(v)}"
             for k, v in data.items()]
    workdir = tmp_path / "run"
    code, err = _run_in_process(argv, workdir, capsys)
    _assert_one_error_line(code, err, workdir, text)


@pytest.fixture(autouse=True)
def _never_train(monkeypatch):
    """A bad input the checks let through would start training: make that a visible failure."""
    from cnn_rnn.training import loop

    def accepted(workdir):
        raise ConfigError("ACCEPTED", "the checks let this input through")

    monkeypatch.setattr(loop, "prepare_workdir", accepted)


def test_no_folder_and_bad_fields_name_their_field(tmp_path):
    with pytest.raises(ConfigError, match="data.path: no such folder"):
        build(str(tmp_path / "nowhere"))
    folder = make_tones(str(tmp_path / "t"), indices=6)
    for kwargs, field in ((dict(split="random"), "data.split"),
                          (dict(test_fraction=1.0, split="fraction"), "data.test_fraction"),
                          (dict(max_seconds=0.0), "data.max_seconds"),
                          (dict(test_speakers=("ann",)), "data.test_speakers"),
                          (dict(split="speakers"), "data.test_speakers")):
        with pytest.raises(ConfigError, match=field):
            build(folder, **kwargs)
    assert os.listdir(tmp_path) == ["t"]
