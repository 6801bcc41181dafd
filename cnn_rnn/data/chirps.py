"""Generated audio in the FSDD layout: chirps whose class is their pitch, for tests and demos.

`make_tones(folder)` writes `{label}_{speaker}_{index}.wav` files (16-bit mono, 8 kHz): class c is
a rising chirp from TONES[c] Hz, each "speaker" shifts the pitch a little and clip lengths vary
(0.15-0.45 s), so decoding, padding, masks and every split mode can be exercised, and a model can
learn the classes, without a download.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from cnn_rnn.data.wav import write_wav

RATE = 8000
TONES = {"0": 300.0, "1": 900.0, "2": 1800.0}  # class -> base frequency (Hz)
SPEAKERS = {"ann": 1.0, "bob": 1.06, "cyd": 0.94}  # speaker -> pitch factor


def chirp(freq: float, seconds: float, rate: int = RATE, sweep: float = 1.3) -> np.ndarray:
    """A tone rising from `freq` to `sweep * freq` over `seconds`, Hann-shaped, peak 0.5."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * freq * (t + (sweep - 1) * t**2 / (2 * seconds))
    return 0.5 * np.sin(phase) * np.hanning(len(t))


def tone_length(label: str, speaker: str, index: int) -> float:
    """Clip length in seconds, varying with the clip (0.15-0.45 s)."""
    return 0.15 + 0.3 * ((int(label) * 7 + len(speaker) * 3 + index * 5) % 11) / 10


def tone_clips(indices: int = 8) -> Iterator[tuple[str, np.ndarray]]:
    """(FSDD name `{label}_{speaker}_{index}.wav`, float samples) of every generated chirp."""
    for label, freq in TONES.items():
        for speaker, factor in SPEAKERS.items():
            for i in range(indices):
                yield (f"{label}_{speaker}_{i}.wav",
                       chirp(freq * factor, tone_length(label, speaker, i)))


def make_tones(folder: str, indices: int = 8) -> str:
    """An FSDD-style folder of `tone_clips` as 16-bit WAV files: class = base frequency."""
    for name, samples in tone_clips(indices):
        write_wav(os.path.join(folder, name), samples)
    return folder
