"""Image (and fixed-shape array) classification sources: scaling, normalisation, pixel views.

One place for what tfds images and user arrays (`data.name="arrays"`) share: inputs are kept in
memory compactly (uint8 when they are bytes) and converted per batch to float32 normalised by
the train split's per-channel mean and std (the last axis is the channel axis). uint8 inputs are
first scaled to [0, 1]. The pixel views (sequential / permuted) come from `sequential.pixel_view`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnn_rnn.data.base import ArraySource, Batch, DataSource
from cnn_rnn.data.sequential import (
    PIXEL_VIEWS,
    MappedSource,
    check_bool,
    check_choice,
    check_int,
    pixel_view,
)
from cnn_rnn.task import TaskSpec


def channel_stats(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-channel mean and std of `inputs` [N, ..., C] as float32 [C].

    uint8 inputs are taken as scaled to [0, 1] and counted with a 256-bin histogram per channel,
    so no float copy of the whole set is made; other dtypes accumulate in float64 per channel.
    """
    means, stds = [], []
    for c in range(inputs.shape[-1]):
        channel = inputs[..., c]
        if inputs.dtype == np.uint8:
            levels = np.arange(256) / 255.0
            counts = np.bincount(channel.ravel(), minlength=256)
            mean = counts @ levels / counts.sum()
            var = counts @ levels**2 / counts.sum() - mean**2
        else:
            mean = float(np.mean(channel, dtype=np.float64))
            var = float(np.var(channel, dtype=np.float64))
        means.append(mean)
        stds.append(np.sqrt(max(var, 1e-12)))
    return np.array(means, np.float32), np.array(stds, np.float32)


def normalizer(train_inputs: np.ndarray, normalize: bool) -> Callable[[Batch], Batch]:
    """Return the batch transform that turns stored inputs into normalised float32.

    Args:
      train_inputs: the stored train inputs [N, ..., C] (uint8 bytes or floats).
      normalize: divide by the train split's per-channel statistics (else only scale uint8
        to [0, 1]).
    """
    unit = 1.0 / 255.0 if train_inputs.dtype == np.uint8 else 1.0
    if normalize:
        mean, std = channel_stats(train_inputs)
        scale, shift = (unit / std).astype(np.float32), (-mean / std).astype(np.float32)
    else:
        scale, shift = np.float32(unit), np.float32(0.0)

    def to_float(batch: Batch) -> Batch:
        return {**batch, "inputs": batch["inputs"].astype(np.float32) * scale + shift}

    return to_float


def majority_fraction(labels: np.ndarray) -> float:
    """Return the accuracy of always predicting the most frequent label."""
    return float(np.bincount(labels).max() / len(labels))


def classification_spec(num_classes: int, input_shape: tuple[int, ...],
                        train_labels: np.ndarray) -> TaskSpec:
    """Return the classification task whose baseline is the train split's majority class."""
    return TaskSpec(kind="classification", num_outputs=num_classes, input_shape=input_shape,
                    baseline=majority_fraction(train_labels), baseline_metric="accuracy",
                    baseline_note="majority class of the train split")


def check_view_options(pixels: str, permutation_seed: int, normalize: bool) -> None:
    """Raise ConfigError for bad `normalized_source` options (call before a slow read)."""
    check_choice("pixels", pixels, PIXEL_VIEWS)
    check_int("permutation_seed", permutation_seed, 0)
    check_bool("normalize", normalize)


def normalized_source(spec: TaskSpec, train: dict[str, np.ndarray], test: dict[str, np.ndarray],
                      seed: int, normalize: bool, pixels: str = "none",
                      permutation_seed: int = 0) -> DataSource:
    """Return an ArraySource over `train`/`test` with normalised float inputs and a pixel view.

    Args:
      spec: the task of the stored arrays (input_shape [*positions, C]).
      train: the train arrays (`inputs` [N, *positions, C], `targets`).
      test: the evaluation arrays, like `train`.
      seed: training-order seed.
      normalize: normalise by the train split's per-channel mean/std.
      pixels: "none", "sequential" or "permuted" (see `sequential.pixel_view`).
      permutation_seed: seed of the "permuted" order.
    """
    inner = ArraySource(spec, train, test, seed)
    mapped = MappedSource(inner, spec, normalizer(train["inputs"], normalize))
    return pixel_view(mapped, pixels, permutation_seed)
