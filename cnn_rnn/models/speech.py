"""Spoken-word classifiers: JAX features of the waveform feeding any registered model.

`model.name="speech"` wraps a backbone (`backbone="gru"`, `backbone_kwargs={...}`) behind the
feature front end of `spectral.py`, so the features are computed on the device inside the jitted
step, from the padded waveform [B, L, 1] and its sample mask that the audio source yields:

  waveform [B, L] -> STFT magnitude | log-mel | MFCC [B, T, F] (+ frame mask [B, T])
    -> per-utterance normalisation over the real frames (zero mean, unit variance per channel)
    -> SpecAugment time/frequency masks (training only, when asked)
    -> the backbone: image models (cnn2d, resnet, cnn_rnn_hybrid) read [B, T, F, 1], time along
       the first axis (the CRNN reads its rows as time steps); sequence models read [B, T, F]
       with the frame mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_number
from cnn_rnn.errors import ConfigError
from cnn_rnn.models import spectral
from cnn_rnn.models.registry import MODELS, register_model
from cnn_rnn.registry import accepted_kwargs

Array = jax.Array
FEATURES = ("stft", "logmel", "mfcc")
NORMALIZE = ("utterance", "none")
IMAGE_BACKBONES = ("cnn2d", "resnet", "cnn_rnn_hybrid")


def normalize_utterance(feats: Array, mask: Array) -> Array:
    """Zero mean, unit variance per example and channel over the real frames; padding set to 0."""
    m = mask[..., None].astype(feats.dtype)
    count = jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
    mean = (feats * m).sum(axis=1, keepdims=True) / count
    var = (jnp.square(feats - mean) * m).sum(axis=1, keepdims=True) / count
    return (feats - mean) * jax.lax.rsqrt(var + 1e-5) * m


@register_model("speech")
class SpeechModel(nn.Module):
    """Features of the waveform (see the module) feeding the model named `backbone`.

    Attributes:
      num_outputs: classes (set from the task).
      backbone: any registered model name (cnn2d, gru, lstm, rnn, cnn_rnn_hybrid, transformer,
        tcn ...); image models get the features as a one-channel [T, F] image.
      backbone_kwargs: the backbone's own keyword arguments.
      features: "stft" (magnitude, log-compressed), "logmel" or "mfcc".
      sample_rate: Hz of the waveform (must be the data's; the speech config ties the two).
      frame_length: samples per frame (the FFT size).
      hop: samples between frame starts.
      n_mels: mel bands (logmel, mfcc).
      n_mfcc: cepstral coefficients kept (mfcc).
      top_db: log features are floored this many dB below each clip's peak (0: no floor).
      normalize: "utterance" (per clip and channel over its real frames) or "none".
      time_masks, time_mask_width, freq_masks, freq_mask_width: SpecAugment bands per example
        (count, largest width in frames / channels), applied when training only; 0 masks: off.
      axis_name: pmap axis for the backbone's BatchNorm (set by the trainer).
    """

    num_outputs: int
    backbone: str = "gru"
    backbone_kwargs: Mapping[str, Any] | None = None
    features: str = "logmel"
    sample_rate: int = 8000
    frame_length: int = 256
    hop: int = 128
    n_mels: int = 40
    n_mfcc: int = 13
    top_db: float = 80.0
    normalize: str = "utterance"
    time_masks: int = 0
    time_mask_width: int = 10
    freq_masks: int = 0
    freq_mask_width: int = 8
    axis_name: str | None = None

    def __post_init__(self) -> None:
        check_choice("model.features", self.features, FEATURES)
        check_choice("model.normalize", self.normalize, NORMALIZE)
        check_int("model.sample_rate", self.sample_rate, 1)
        check_int("model.frame_length", self.frame_length, 2)
        check_int("model.hop", self.hop, 1)
        check_int("model.n_mels", self.n_mels, 1, self.frame_length // 2 + 1)
        check_int("model.n_mfcc", self.n_mfcc, 1, self.n_mels)
        check_number("model.top_db", self.top_db)
        for field in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            check_int(f"model.{field}", getattr(self, field), 0)
        if self.backbone == "speech":
            raise ConfigError("model.backbone", "cannot be 'speech' itself")
        self.make_backbone(parent=None)  # validates the backbone's name and arguments
        super().__post_init__()

    def make_backbone(self, **module_kwargs: Any) -> nn.Module:
        """The backbone module (its errors are ConfigErrors on `model.backbone_kwargs.<field>`)."""
        ctor = MODELS.get(self.backbone) if self.backbone in MODELS.names() else None
        if ctor is None:
            raise ConfigError("model.backbone", f"unknown {self.backbone!r}; accepted: "
                              f"{', '.join(n for n in MODELS.names() if n != 'speech')}")
        fixed: dict[str, Any] = {"num_outputs": self.num_outputs, **module_kwargs}
        if "axis_name" in accepted_kwargs(ctor):
            fixed["axis_name"] = self.axis_name
        kwargs = dict(self.backbone_kwargs or {})
        try:
            MODELS.check_kwargs(self.backbone, kwargs, reserved=tuple(fixed))
            try:
                return ctor(**kwargs, **fixed)
            except TypeError as e:  # as Registry.build words it
                raise ConfigError("model", f"{self.backbone!r}: {e}") from e
        except ConfigError as e:
            field = e.field.removeprefix("model.").removeprefix("model")
            raise ConfigError(f"model.backbone_kwargs{'.' + field if field else ''}",
                              str(e).split(": ", 1)[1]) from e

    @property
    def num_features(self) -> int:
        """Channels per frame: FFT bins, mel bands or coefficients."""
        return {"stft": self.frame_length // 2 + 1, "logmel": self.n_mels,
                "mfcc": self.n_mfcc}[self.features]

    def featurize(self, waves: Array, mask: Array | None = None) -> tuple[Array, Array]:
        """(features [B, T, F], frame mask [B, T]) of waveforms [B, L] or [B, L, 1]."""
        if waves.ndim == 3:
            waves = waves[..., 0]
        if mask is None:
            mask = jnp.ones(waves.shape, bool)
        n_fft, hop = self.frame_length, self.hop
        if self.features == "stft":
            feats = spectral.power_to_db(
                jnp.square(spectral.stft_magnitude(waves, n_fft, hop)), self.top_db)
        elif self.features == "logmel":
            feats = spectral.log_mel(waves, self.sample_rate, n_fft, hop, self.n_mels,
                                     self.top_db)
        else:
            feats = spectral.mfcc(waves, self.sample_rate, n_fft, hop, self.n_mels, self.n_mfcc,
                                  self.top_db)
        fmask = spectral.frame_mask(mask, n_fft, hop)
        if self.normalize == "utterance":
            feats = normalize_utterance(feats, fmask)
        return feats, fmask

    @nn.compact
    def __call__(self, inputs: Array, train: bool = False, mask: Array | None = None) -> Array:
        """Logits [B, num_outputs] for waveforms [B, L, 1] with sample mask [B, L]."""
        feats, fmask = self.featurize(inputs, mask)
        if train and (self.time_masks or self.freq_masks):
            feats = spectral.spec_augment(
                self.make_rng("dropout"), feats, time_masks=self.time_masks,
                time_width=self.time_mask_width, freq_masks=self.freq_masks,
                freq_width=self.freq_mask_width)
        model = self.make_backbone(name="backbone")
        if self.backbone in IMAGE_BACKBONES:
            return model(feats[..., None], train=train, mask=fmask)
        return model(feats, train=train, mask=fmask)
