"""A folder of WAV recordings as a classification source: `data.name="audio"`, `data.path=DIR`.

Labels come from one of two layouts (`labels="auto"` picks whichever the folder has):
  folders   class subfolders, `DIR/<class>/<file>.wav` (Keras `audio_dataset_from_directory`);
            a file's speaker is the part of its name before the first "_" (Speech Commands'
            `{speaker}_nohash_{n}.wav`).
  names     Free Spoken Digit Dataset names, `DIR/{label}_{speaker}_{index}.wav`.

Splits (`split=`):
  official  FSDD's: recordings with index 0-4 are the test set, the rest train (needs `names`).
  fraction  a fixed random `test_fraction` of the recordings (the order is seeded by 0, not by the
            run's seed, so every run of a sweep tests on the same clips).
  speakers  speaker-independent: every recording of `test_speakers` is the test set and none of
            theirs is trained on; what honest speech evaluation needs.

The same recordings from TensorFlow Datasets: `data.name="spoken_digit"` reads tfds'
`spoken_digit` (one "train" split of all 2,500 clips, already decoded) through the tfds path
(`tfds.read_split`, cached once) and applies the same split modes, with speaker and index parsed
from each example's `audio/filename`.

Every clip is decoded with the standard library (`wav.read_wav`: 16-bit PCM mono), brought to
`sample_rate` (0: the files' own, which must then agree; a file at another rate is an error unless
`resample=True`, see `wav.resample`), and right-padded with zeros to `max_seconds`; the batch's
`mask` [B, L] marks the real samples. A longer clip is an error, or cut to `max_seconds` with
`truncate=True`. The features (STFT, log-mel, MFCC) are computed from the waveform by the model,
in JAX on the device (`cnn_rnn/models/speech.py`), so `inputs` is the waveform [B, L, 1].
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnn_rnn.config_checks import check_number
from cnn_rnn.data.base import ArraySource
from cnn_rnn.data.images import classification_spec
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_bool, check_choice, check_int
from cnn_rnn.data.wav import read_wav, resample
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec

LABELS = ("auto", "names", "folders")
SPLITS = ("official", "fraction", "speakers")
FSDD_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>\d+)\.wav$", re.IGNORECASE)
OFFICIAL_TEST_INDICES = range(5)  # FSDD's README: indices 0-4 of every (digit, speaker) are test
ACCEPTED = ("a folder of .wav files, in class subfolders (DIR/<class>/*.wav) or named "
            "{label}_{speaker}_{index}.wav")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One recording: its file, class name, speaker (None if unknown) and FSDD index (or None).

    From tfds, `path` is the example's `audio/filename`.
    """

    path: str
    label: str
    speaker: str | None
    index: int | None


def _wav_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".wav")
                  and os.path.isfile(os.path.join(folder, f)))


# A clip's samples (float32 in [-1, 1)) and their rate.
Reader = Callable[[Clip], tuple[np.ndarray, int]]


def read_clip_file(clip: Clip) -> tuple[np.ndarray, int]:
    """The Reader of a folder: decode the clip's WAV file."""
    return read_wav(clip.path)


def fsdd_clip(path: str, label: str | None = None) -> Clip | None:
    """The Clip of an FSDD name `{label}_{speaker}_{index}.wav`, or None if it does not parse.

    A `label` given wins over the one in the name.
    """
    m = FSDD_NAME.match(os.path.basename(path))
    if m is None:
        return None
    return Clip(path, m["label"] if label is None else label, m["speaker"], int(m["index"]))


def list_clips(path: str, labels: str) -> list[Clip]:
    """Every recording under `path` with its label, speaker and index, or a ConfigError."""
    if not isinstance(path, str) or not os.path.isdir(path):
        raise ConfigError("data.path", f"no such folder {path!r}; accepted: {ACCEPTED}")
    top = _wav_files(path)
    subfolders = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
                        and _wav_files(os.path.join(path, d)))
    if labels == "auto":
        labels = "folders" if subfolders and not top else "names"
    if labels == "folders":
        clips = [Clip(os.path.join(path, d, f), d, f.split("_")[0] if "_" in f else None, None)
                 for d in subfolders for f in _wav_files(os.path.join(path, d))]
    else:
        clips = []
        for f in top:
            clip = fsdd_clip(os.path.join(path, f))
            if clip is None:
                raise ConfigError("data.labels", f"{f}: the name does not parse as "
                                  "{label}_{speaker}_{index}.wav; accepted: FSDD names, or "
                                  "labels='folders' with class subfolders")
            clips.append(clip)
    if not clips:
        raise ConfigError("data.path", f"{path} holds no .wav files ({labels} layout); "
                          f"accepted: {ACCEPTED}")
    return clips


def class_names(clips: list[Clip]) -> list[str]:
    """The sorted class names (numerically when they are all integers, so '10' follows '9')."""
    names = set(c.label for c in clips)
    numeric = all(n.isdigit() for n in names)
    return sorted(names, key=lambda n: (int(n), n) if numeric else (0, n))


def split_clips(clips: list[Clip], split: str, test_fraction: float,
                test_speakers: tuple[str, ...]) -> tuple[list[Clip], list[Clip]]:
    """(train, test) clips under `split` (see the module), or a ConfigError."""
    if split == "official":
        if any(c.index is None for c in clips):
            raise ConfigError("data.split", "'official' needs FSDD names "
                              "{label}_{speaker}_{index}.wav; accepted: fraction, speakers")
        test = [c.index in OFFICIAL_TEST_INDICES for c in clips]
    elif split == "fraction":
        order = np.random.default_rng(0).permutation(len(clips))
        chosen = set(order[: round(test_fraction * len(clips))].tolist())
        test = [i in chosen for i in range(len(clips))]
    else:
        speakers = sorted({c.speaker for c in clips if c.speaker is not None})
        unknown = [s for s in test_speakers if s not in speakers]
        if not test_speakers or unknown:
            what = f"no recordings of {', '.join(unknown)}" if unknown else "is empty"
            raise ConfigError("data.test_speakers", f"{what}; accepted: speakers among "
                              f"{', '.join(speakers) or 'none (no speaker in the file names)'}")
        test = [c.speaker in test_speakers for c in clips]
    train_clips = [c for c, t in zip(clips, test, strict=True) if not t]
    test_clips = [c for c, t in zip(clips, test, strict=True) if t]
    if not train_clips or not test_clips:
        raise ConfigError(f"data.{'test_fraction' if split == 'fraction' else 'split'}",
                          f"{split!r} leaves {len(train_clips)} training and {len(test_clips)} "
                          "test recordings; accepted: a split with both non-empty")
    return train_clips, test_clips


def load_waves(clips: list[Clip], read: Reader, sample_rate: int, allow_resample: bool,
               length: int, truncate: bool,
               max_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(waveforms float32 [N, length] zero-padded, lengths int [N]) of `clips` at `sample_rate`."""
    waves = np.zeros((len(clips), length), np.float32)
    lengths = np.zeros(len(clips), np.int64)
    for i, clip in enumerate(clips):
        x, rate = read(clip)
        if rate != sample_rate:
            if not allow_resample:
                raise ConfigError("data.sample_rate", f"{os.path.basename(clip.path)} is at "
                                  f"{rate} Hz, not {sample_rate}; accepted: files at "
                                  "sample_rate, or resample=True")
            x = resample(x, rate, sample_rate)
        if len(x) > length and not truncate:
            raise ConfigError("data.max_seconds", f"{os.path.basename(clip.path)} lasts "
                              f"{len(x) / sample_rate:.3f} s > max_seconds={max_seconds}; "
                              "accepted: a larger max_seconds, or truncate=True")
        n = min(len(x), length)
        waves[i, :n] = x[:n]
        lengths[i] = n
    return waves, lengths


class AudioSource(ArraySource):
    """An ArraySource of padded waveforms [N, L, 1] with `mask` [N, L]; knows its clips."""

    def __init__(self, spec: TaskSpec, train: dict[str, np.ndarray], test: dict[str, np.ndarray],
                 seed: int, *, classes: list[str], train_clips: list[Clip],
                 test_clips: list[Clip], sample_rate: int):
        super().__init__(spec, train, test, seed)
        self.classes = classes
        self.train_clips = train_clips
        self.test_clips = test_clips
        self.sample_rate = sample_rate


def check_split_options(split: Any, test_fraction: Any, test_speakers: Any, sample_rate: Any,
                        resample: Any, max_seconds: Any, truncate: Any) -> tuple[str, tuple]:
    """Raise ConfigError on a bad split or clip field; return (split, test_speakers as a tuple)."""
    split = check_choice("split", split, SPLITS)
    check_number("data.test_fraction", test_fraction, strict=True, below=1.0)
    check_number("data.max_seconds", max_seconds, strict=True, below=3600.0)
    check_int("sample_rate", sample_rate, 0)
    check_bool("resample", resample)
    check_bool("truncate", truncate)
    if isinstance(test_speakers, str):
        test_speakers = tuple(s.strip() for s in test_speakers.split(",") if s.strip())
    test_speakers = tuple(test_speakers)
    if test_speakers and split != "speakers":
        raise ConfigError("data.test_speakers", f"is set, but split={split!r}; accepted: "
                          "test_speakers with split='speakers', or none")
    return split, test_speakers


def clips_source(clips: list[Clip], read: Reader, seed: int, split: str, test_fraction: float,
                 test_speakers: tuple[str, ...], sample_rate: int, resample: bool,
                 max_seconds: float, truncate: bool,
                 classes: Sequence[str] | None = None) -> AudioSource:
    """The AudioSource of `clips` read by `read`, split and padded as the module says.

    `classes` fixes the class order (a dataset's own label names); None: `class_names(clips)`.
    """
    train_clips, test_clips = split_clips(clips, split, test_fraction, test_speakers)
    classes = list(classes) if classes is not None else class_names(clips)
    if sample_rate == 0:
        sample_rate = read(clips[0])[1]
    length = max(1, round(max_seconds * sample_rate))
    arrays = []
    for part in (train_clips, test_clips):
        waves, lengths = load_waves(part, read, sample_rate, resample, length, truncate,
                                    max_seconds)
        arrays.append({"inputs": waves[..., None],
                       "mask": np.arange(length)[None, :] < lengths[:, None],
                       "targets": np.array([classes.index(c.label) for c in part], np.int32)})
    spec = classification_spec(len(classes), (length, 1), arrays[0]["targets"])
    return AudioSource(spec, arrays[0], arrays[1], seed, classes=classes,
                       train_clips=train_clips, test_clips=test_clips, sample_rate=sample_rate)


@register_data("audio")
def audio(seed: int, path: str = "", labels: str = "auto", split: str = "official",
          test_fraction: float = 0.1, test_speakers: tuple[str, ...] = (),
          sample_rate: int = 0, resample: bool = False, max_seconds: float = 2.5,
          truncate: bool = False) -> AudioSource:
    """Build the spoken-word source from a folder of WAV files; see the module.

    Args:
      seed: training-order seed.
      path: the folder.
      labels: "auto", "names" (FSDD `{label}_{speaker}_{index}.wav`) or "folders".
      split: "official" (FSDD index 0-4 test), "fraction" or "speakers".
      test_fraction: the test share under split="fraction".
      test_speakers: the held-out speakers under split="speakers" (a tuple, or one comma-separated
        string).
      sample_rate: Hz the model sees; 0 takes the first file's rate.
      resample: bring files at another rate to `sample_rate` (FFT resampling) instead of failing.
      max_seconds: clips are padded to this length (and must not be longer, see `truncate`).
      truncate: cut longer clips to `max_seconds` instead of failing.
    """
    labels = check_choice("labels", labels, LABELS)
    split, test_speakers = check_split_options(split, test_fraction, test_speakers, sample_rate,
                                               resample, max_seconds, truncate)
    clips = list_clips(path, labels)
    return clips_source(clips, read_clip_file, seed, split, test_fraction, test_speakers,
                        sample_rate, resample, max_seconds, truncate)
