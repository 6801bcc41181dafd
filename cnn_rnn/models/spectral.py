"""Audio features in JAX: STFT magnitude, log-mel spectrogram, MFCC, and SpecAugment masks.

The equations are librosa's (and the tests check them against librosa to 1e-4 relative):
  frames     x[t*hop : t*hop + n_fft] for t < 1 + (L - n_fft) // hop (no centring padding)
  STFT       |rfft(frame * w)|, w the periodic Hann window of n_fft samples
  mel        power spectrum |X|^2 times the Slaney mel filterbank (area-normalised triangles,
             linear below 1 kHz, logarithmic above), fmin = 0, fmax = sample_rate / 2
  log-mel    10 log10(max(mel, 1e-10)), floored at top_db below the clip's maximum
  MFCC       the orthonormal DCT-II of the log-mel bands, first n_mfcc coefficients

The filterbank and the DCT matrix are constants built once in float64 numpy; everything per clip
runs in JAX, so the features are computed on the device inside the model's jitted step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
AMIN = 1e-10  # librosa.power_to_db's floor on the power before the log


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    linear = f / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, linear)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    m = np.asarray(m, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """The Slaney-normalised triangular mel filters, float64 [n_mels, n_fft // 2 + 1]."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=16)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """The orthonormal DCT-II as a matrix, float64 [n_mels, n_mfcc]: mfcc = logmel @ D."""
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_mfcc)[None, :]
    d = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    d[:, 0] /= np.sqrt(2.0)
    d.flags.writeable = False
    return d


def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window of n samples (scipy's `get_window('hann', n)`), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def num_frames(length: int, n_fft: int, hop: int) -> int:
    """Frames of `n_fft` samples every `hop` in `length` samples (at least one)."""
    return 1 + max(0, length - n_fft) // hop


def frames(x: Array, n_fft: int, hop: int) -> Array:
    """Overlapping frames [B, T, n_fft] of waveforms x [B, L] (zero-padded to one frame)."""
    if x.shape[1] < n_fft:
        x = jnp.pad(x, ((0, 0), (0, n_fft - x.shape[1])))
    t = num_frames(x.shape[1], n_fft, hop)
    idx = np.arange(t)[:, None] * hop + np.arange(n_fft)[None, :]
    return x[:, idx]


def frame_mask(mask: Array, n_fft: int, hop: int) -> Array:
    """Which frames [B, T] hold real samples: frame t starts at t*hop inside the clip.

    A frame's tail may read the zero padding after the clip (as librosa's last frames read its
    padding), so the features of the real frames do not depend on how much padding follows; a
    clip cut at the array's end keeps only the frames that fit.
    """
    t = num_frames(max(mask.shape[1], n_fft), n_fft, hop)
    return mask[:, : (t - 1) * hop + 1 : hop]


def stft_magnitude(x: Array, n_fft: int, hop: int) -> Array:
    """|STFT| [B, T, n_fft // 2 + 1] of waveforms x [B, L] (periodic Hann window)."""
    window = jnp.asarray(hann_window(n_fft), x.dtype)
    return jnp.abs(jnp.fft.rfft(frames(x, n_fft, hop) * window, axis=-1))


def mel_power(x: Array, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> Array:
    """Mel-band power [B, T, n_mels] of waveforms x [B, L]."""
    fb = jnp.asarray(mel_filterbank(sample_rate, n_fft, n_mels).T, x.dtype)
    return jnp.square(stft_magnitude(x, n_fft, hop)) @ fb


def power_to_db(power: Array, top_db: float = 80.0) -> Array:
    """10 log10(max(power, 1e-10)), floored at `top_db` below each example's maximum (0: none)."""
    db = 10.0 * jnp.log10(jnp.maximum(power, AMIN))
    if top_db:
        peak = jnp.max(db, axis=tuple(range(1, db.ndim)), keepdims=True)
        db = jnp.maximum(db, peak - top_db)
    return db


def log_mel(x: Array, sample_rate: int, n_fft: int, hop: int, n_mels: int,
            top_db: float = 80.0) -> Array:
    """Log-mel spectrogram in dB [B, T, n_mels] of waveforms x [B, L]."""
    return power_to_db(mel_power(x, sample_rate, n_fft, hop, n_mels), top_db)


def mfcc(x: Array, sample_rate: int, n_fft: int, hop: int, n_mels: int, n_mfcc: int,
         top_db: float = 80.0) -> Array:
    """MFCCs [B, T, n_mfcc] of waveforms x [B, L]: the DCT-II (ortho) of the log-mel bands."""
    return log_mel(x, sample_rate, n_fft, hop, n_mels, top_db) @ jnp.asarray(
        dct_matrix(n_mels, n_mfcc), x.dtype)


def spec_augment(rng: Array, feats: Array, *, time_masks: int, time_width: int,
                 freq_masks: int, freq_width: int) -> Array:
    """SpecAugment's masking (Park et al. 2019): zero random bands of features [B, T, F].

    Each example gets `time_masks` bands of up to `time_width` frames and `freq_masks` bands of up
    to `freq_width` channels, widths and starts uniform; the value 0 is the mean of
    utterance-normalised features.
    """
    b, t, f = feats.shape
    keep = jnp.ones((b, t, f), bool)
    for axis, count, width, size in ((1, time_masks, time_width, t),
                                     (2, freq_masks, freq_width, f)):
        for _ in range(count):
            rng, k_w, k_s = jax.random.split(rng, 3)
            w = jax.random.randint(k_w, (b, 1), 0, width + 1)
            start = jax.random.randint(k_s, (b, 1), 0, jnp.maximum(size - w, 0) + 1)
            pos = jnp.arange(size)[None, :]
            band = (pos >= start) & (pos < start + w)  # [B, size]
            keep &= ~(band[:, :, None] if axis == 1 else band[:, None, :])
    return jnp.where(keep, feats, 0.0)
