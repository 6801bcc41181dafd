"""Reading (and writing) WAV files with the standard library, and the audio source's resampler.

`read_wav` takes 16-bit PCM mono files (what the Free Spoken Digit Dataset and most keyword-spotting
sets hold) and returns float32 samples in [-1, 1) with the file's sample rate. Anything else
(stereo, 8/24/32-bit, compressed, not a WAV, truncated) is a ConfigError on `data.path` naming
the file, so a bad folder fails before any training starts.

`resample` is band-limited resampling by the FFT (the method of `scipy.signal.resample`): the
clip's spectrum is truncated or zero-padded to the new length. It is exact for periodic signals
and adds a little ringing at the clip's ends otherwise, which the short silence FSDD leaves at both
ends keeps below the features' resolution. The audio source uses it only when asked
(`data.resample=True`); by default a file at another rate is an error.
"""

from __future__ import annotations

import os
import wave

import numpy as np

from cnn_rnn.errors import ConfigError

ACCEPTED = "16-bit PCM mono WAV files"


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Return (samples float32 [n] in [-1, 1), sample rate) of a 16-bit mono WAV, or ConfigError."""
    name = os.path.basename(path)
    try:
        with wave.open(path, "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            declared = f.getnframes()
            raw = f.readframes(declared)
    except (wave.Error, EOFError) as e:
        raise ConfigError("data.path", f"{path}: not a readable WAV file ({e}); accepted: "
                          f"{ACCEPTED}") from e
    except OSError as e:
        raise ConfigError("data.path", f"{path}: cannot read ({e.strerror or e})") from e
    if channels != 1:
        raise ConfigError("data.path", f"{name} has {channels} channels; accepted: {ACCEPTED} "
                          "(mix it down to mono first)")
    if width != 2:
        raise ConfigError("data.path", f"{name} has {8 * width}-bit samples; accepted: {ACCEPTED}")
    if len(raw) != declared * width:
        raise ConfigError("data.path", f"{name} is truncated: its header declares {declared} "
                          f"samples, the file holds {len(raw) // width}; accepted: complete "
                          f"{ACCEPTED}")
    if declared == 0:
        raise ConfigError("data.path", f"{name} holds no samples; accepted: {ACCEPTED}")
    return from_pcm16(np.frombuffer(raw, "<i2")), rate


def from_pcm16(ints: np.ndarray) -> np.ndarray:
    """16-bit PCM sample values as float32 in [-1, 1): divided by 32768."""
    return ints.astype(np.float32) / 32768.0


def resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited (FFT) resampling of x [n] from `rate` to `new_rate` Hz; float32 out."""
    if rate == new_rate:
        return x
    n = len(x)
    m = max(1, round(n * new_rate / rate))
    spectrum = np.fft.rfft(x.astype(np.float64))
    keep = min(len(spectrum), m // 2 + 1)
    out = np.zeros(m // 2 + 1, np.complex128)
    out[:keep] = spectrum[:keep]
    if m < n and m % 2 == 0:  # the new Nyquist bin holds both halves of the old spectrum's bin
        out[m // 2] = out[m // 2].real
    return (np.fft.irfft(out, m) * (m / n)).astype(np.float32)


def write_wav(path: str, samples: np.ndarray, rate: int = 8000, width: int = 2,
              channels: int = 1) -> str:
    """Write float samples in [-1, 1] ([n] or [n, channels]) as `width`-byte PCM; return path."""
    x = np.asarray(samples, np.float64).reshape(len(samples), -1)
    x = np.repeat(x, channels // x.shape[1], axis=1) if x.shape[1] != channels else x
    ints = np.round(x * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints.ravel())
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with wave.open(path, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(raw)
    return path
