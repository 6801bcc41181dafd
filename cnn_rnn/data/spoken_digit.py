"""tfds `spoken_digit` (the Free Spoken Digit Dataset) as `data.name="spoken_digit"`.

The same recordings as the FSDD folder that `data.name="audio"` reads, served by TensorFlow
Datasets: one split ("train") holding all 2,500 clips, each an int16-valued waveform at 8 kHz with
its class and its original file name (`audio/filename`, `{label}_{speaker}_{index}.wav`). The
split is read through the tfds path (`tfds.read_split`: random access, decoded once into the
memory-mapped cache) and then carved exactly as the folder source does (`audio.clips_source`):
FSDD's official split (index 0-4 test), a fixed fraction, or speaker-independent, the speaker and
index parsed from the file name. Padding, masks, `max_seconds`, `truncate` and resampling are the
folder source's too, so a run on either source sees the same arrays.

tensorflow_datasets (4.9.10) builds the Audio feature with TensorFlow, even to read a prepared
copy, so this source needs TensorFlow installed (`pip install tensorflow-cpu`); without it, it is
one error line that says so and names the folder source, which reads the same recordings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_rnn.data.audio import AudioSource, Clip, check_split_options, clips_source, fsdd_clip
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.tfds import check_common, read_split, to_bytes
from cnn_rnn.data.wav import from_pcm16
from cnn_rnn.errors import ConfigError

TFDS_NAME = "spoken_digit"
INT16 = np.iinfo(np.int16)


def clip_arrays(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The examples as the cache keeps them: int16 `samples` of all clips, concatenated.

    Per example: `lengths`, `label` and `filename` (bytes).
    """
    waves = [np.asarray(e["audio"]).reshape(-1) for e in examples]
    names = [to_bytes(e["audio/filename"]) for e in examples]
    for wave, name in zip(waves, names, strict=True):
        if wave.size and (wave.min() < INT16.min or wave.max() > INT16.max):
            raise ConfigError("data.name", f"{TFDS_NAME} example {name.decode(errors='replace')}"
                              " holds samples outside the 16-bit range; accepted: the tfds "
                              "dataset as published (int16-valued audio)")
    return {"samples": np.concatenate(waves).astype(np.int16) if waves else np.zeros(0, np.int16),
            "lengths": np.array([w.size for w in waves], np.int64),
            "label": np.array([e["label"] for e in examples], np.int32),
            "filename": np.array(names, dtype=bytes)}


def check_audio_feature() -> None:
    """Raise ConfigError unless tensorflow_datasets can build an Audio feature (needs TF)."""
    import tensorflow_datasets as tfds

    try:
        tfds.features.Audio(sample_rate=8000)
    except ModuleNotFoundError as e:
        raise ConfigError("data.name", f"tfds {TFDS_NAME!r} needs TensorFlow (tfds builds its "
                          f"Audio feature with it, {e}); accepted: pip install tensorflow-cpu, or "
                          "the same recordings as a folder: data.name='audio', data.path=DIR"
                          ) from e


@register_data("spoken_digit")
def spoken_digit(seed: int, data_dir: str | None = None, tfds_split: str = "train",
                 split: str = "official", test_fraction: float = 0.1,
                 test_speakers: tuple[str, ...] = (), sample_rate: int = 0,
                 resample: bool = False, max_seconds: float = 2.5, truncate: bool = False,
                 cache: bool = True, cache_dir: str | None = None) -> AudioSource:
    """Build the spoken-digit source from tfds `spoken_digit`; see the module and `audio.audio`.

    Args:
      seed: training-order seed.
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      tfds_split: the tfds split whose recordings are split into train and test (tfds slicing
        allowed, e.g. "train[:50%]").
      split: "official" (FSDD index 0-4 test), "fraction" or "speakers".
      test_fraction: the test share under split="fraction".
      test_speakers: the held-out speakers under split="speakers".
      sample_rate: Hz the model sees; 0 takes the dataset's (8 kHz).
      resample: bring the clips to `sample_rate` when it differs (FFT resampling) instead of
        failing.
      max_seconds: clips are padded to this length (and must not be longer, see `truncate`).
      truncate: cut longer clips to `max_seconds` instead of failing.
      cache: keep the decoded split in a cache beside the dataset (see tfds_cache).
      cache_dir: root of that cache (None: <data_dir>/<name>/<version>/cnn_rnn_cache).
    """
    check_common(data_dir, cache, cache_dir, tfds_split=tfds_split)
    split, test_speakers = check_split_options(split, test_fraction, test_speakers, sample_rate,
                                               resample, max_seconds, truncate)
    check_audio_feature()
    arrays, info = read_split(TFDS_NAME, tfds_split, data_dir, "tfds_split", clip_arrays, "",
                              cache, cache_dir)
    classes = list(info.features["label"].names)
    rate = int(info.features["audio"].sample_rate)
    ends = np.cumsum(arrays["lengths"])
    spans: dict[str, slice] = {}  # file name -> its samples in arrays["samples"]
    clips = []
    for raw, label, end, n in zip(arrays["filename"], arrays["label"], ends, arrays["lengths"],
                                  strict=True):
        name = raw.decode(errors="replace")
        if name in spans:
            raise ConfigError("data.tfds_split", f"{name} appears twice in {TFDS_NAME} "
                              f"{tfds_split!r}; accepted: a split of distinct recordings")
        spans[name] = slice(end - n, end)
        clips.append(fsdd_clip(name, classes[label]) or Clip(name, classes[label], None, None))
    clips.sort(key=lambda c: c.path)  # the folder's order, so that every split mode agrees

    def read(clip: Clip) -> tuple[np.ndarray, int]:
        return from_pcm16(arrays["samples"][spans[clip.path]]), rate

    return clips_source(clips, read, seed, split, test_fraction, test_speakers, sample_rate,
                        resample, max_seconds, truncate, classes=classes)
