"""Audio features in JAX (STFT magnitude, log-mel, MFCC) against float64 references, frame masks,
SpecAugment, and the `speech` model over every backbone the speech config uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data.chirps import RATE, chirp
from cnn_rnn.errors import ConfigError
from cnn_rnn.models import spectral
from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec
from configs.speech import BACKBONES

N_FFT, HOP, N_MELS, N_MFCC = 256, 128, 40, 13
TOL = 1e-4  # relative to the reference's largest magnitude


def clips() -> np.ndarray:
    """Two chirps with a little noise, float64 [2, 4000]."""
    noise = np.random.default_rng(0).standard_normal((2, 4000)) * 1e-3
    return np.stack([chirp(300, 0.5), chirp(1500, 0.5)]) + noise


def rel_err(ours, ref) -> float:
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref)) / np.max(np.abs(ref)))


def test_stft_magnitude_matches_numpy_float64():
    x = clips()
    frames = np.stack([x[:, t * HOP: t * HOP + N_FFT] for t in range(1 + (4000 - N_FFT) // HOP)],
                      axis=1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    ref = np.abs(np.fft.rfft(frames * window, axis=-1))
    ours = spectral.stft_magnitude(jnp.asarray(x, jnp.float32), N_FFT, HOP)
    assert ours.shape == ref.shape == (2, 30, N_FFT // 2 + 1)
    assert rel_err(ours, ref) < TOL


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_features_match_librosa():
    librosa = pytest.importorskip("librosa")
    x = clips()
    kw = dict(sr=RATE, n_fft=N_FFT, hop_length=HOP, center=False)
    np.testing.assert_allclose(spectral.mel_filterbank(RATE, N_FFT, N_MELS),
                               librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=N_MELS,
                                                   dtype=np.float64), rtol=1e-10, atol=1e-14)
    stft = np.abs(np.stack([librosa.stft(c, **{k: v for k, v in kw.items() if k != "sr"})
                            for c in x])).transpose(0, 2, 1)
    db = np.stack([librosa.power_to_db(librosa.feature.melspectrogram(y=c, n_mels=N_MELS, **kw),
                                       top_db=80.0) for c in x])
    mfcc = np.stack([librosa.feature.mfcc(S=d, n_mfcc=N_MFCC) for d in db])
    x32 = jnp.asarray(x, jnp.float32)
    assert rel_err(spectral.stft_magnitude(x32, N_FFT, HOP), stft) < TOL
    assert rel_err(spectral.log_mel(x32, RATE, N_FFT, HOP, N_MELS), db.transpose(0, 2, 1)) < TOL
    assert rel_err(spectral.mfcc(x32, RATE, N_FFT, HOP, N_MELS, N_MFCC),
                   mfcc.transpose(0, 2, 1)) < TOL


def test_frame_mask_and_padding():
    x = np.zeros((2, 2000), np.float32)
    x[0, :1000], x[1, :] = chirp(500, 1000 / RATE), chirp(500, 0.25)
    mask = np.arange(2000)[None] < np.array([[1000], [2000]])
    fmask = np.asarray(spectral.frame_mask(jnp.asarray(mask), N_FFT, HOP))
    assert fmask.shape == (2, spectral.num_frames(2000, N_FFT, HOP))
    assert fmask[0].sum() == 8 and fmask[1].all()  # frames starting at 0, 128, ..., 896
    # Extra zero padding adds frames but leaves the real frames' features unchanged.
    longer = np.pad(x, ((0, 0), (0, 700)))
    a = spectral.log_mel(jnp.asarray(x), RATE, N_FFT, HOP, N_MELS)
    b = spectral.log_mel(jnp.asarray(longer), RATE, N_FFT, HOP, N_MELS)
    np.testing.assert_allclose(a, b[:, : a.shape[1]], atol=1e-4)


def test_spec_augment_zeroes_bands_only_when_asked():
    feats = jnp.ones((4, 30, 40))
    out = spectral.spec_augment(jax.random.PRNGKey(0), feats, time_masks=2, time_width=5,
                                freq_masks=1, freq_width=6)
    zeroed = np.asarray(out == 0)
    assert zeroed.any() and not zeroed.all()
    for example in zeroed:  # masks are whole rows (frames) or whole columns (channels)
        rows, cols = example.all(1), example.all(0)
        assert rows.sum() <= 10 and cols.sum() <= 6
        np.testing.assert_array_equal(example, rows[:, None] | cols[None, :])
    same = spectral.spec_augment(jax.random.PRNGKey(0), feats, time_masks=2, time_width=5,
                                 freq_masks=1, freq_width=6)
    np.testing.assert_array_equal(out, same)


SPEC = TaskSpec(kind="classification", num_outputs=3, input_shape=(4000, 1))
SMALL = {"cnn2d": dict(features=(4, 8), hidden=8), "gru": dict(hidden=8),
         "lstm": dict(hidden=8), "rnn": dict(hidden=8), "crnn": dict(features=(4, 8), hidden=8),
         "transformer": dict(d_model=8, num_heads=2, mlp_dim=16),
         "tcn": dict(levels=3, hidden=8)}


def speech_model(model: str, **kw):
    backbone, kwargs = BACKBONES[model]
    return build_model(dict(name="speech", backbone=backbone,
                            backbone_kwargs={**kwargs, **SMALL[model]}, **kw), SPEC)


@pytest.mark.parametrize("model", list(BACKBONES))
def test_every_speech_backbone_runs_on_waveforms(model):
    m = speech_model(model, time_masks=1, freq_masks=1)
    x = jnp.asarray(clips()[:, :, None], jnp.float32)
    mask = jnp.ones((2, 4000), bool)
    variables = m.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x,
                       train=False, mask=mask)
    logits = m.apply(variables, x, train=False, mask=mask)
    assert logits.shape == (2, 3) and np.isfinite(logits).all()


@pytest.mark.parametrize("model", ["gru", "crnn", "transformer"])
def test_padding_beyond_the_mask_does_not_change_the_outputs(model):
    m = speech_model(model)
    x = np.zeros((2, 4000, 1), np.float32)
    # Frames start inside a clip and read the zero padding after it, so every clip here is
    # followed by at least n_fft samples of padding, as the audio source's clips are.
    x[0, :2500, 0] = clips()[0, :2500]
    x[1, :3000, 0] = clips()[1, :3000]
    mask = np.arange(4000)[None] < np.array([[2500], [3000]])
    variables = m.init(jax.random.PRNGKey(0), jnp.asarray(x), train=False, mask=mask)
    a = m.apply(variables, jnp.asarray(x), train=False, mask=mask)
    longer = np.pad(x, ((0, 0), (0, 1024), (0, 0)))
    b = m.apply(variables, jnp.asarray(longer), train=False,
                mask=np.pad(mask, ((0, 0), (0, 1024))))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_speech_model_fields_name_their_field():
    for kw, field in ((dict(backbone="nope"), "model.backbone"),
                      (dict(backbone_kwargs=dict(hiden=3)), "model.backbone_kwargs.hiden"),
                      (dict(features="mel"), "model.features"),
                      (dict(n_mfcc=50), "model.n_mfcc")):
        with pytest.raises(ConfigError, match=field):
            build_model(dict(name="speech", **kw), SPEC)
