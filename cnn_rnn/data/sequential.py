"""Pixel-sequence views of image sources (sMNIST, pMNIST, sCIFAR), and the wrapper they use.

An image [H, W, C] becomes a sequence [H*W, C] read in raster order ("sequential", one pixel per
step: Le et al. 2015), or in a fixed random order ("permuted"), which destroys the locality that
makes the sequential task partly easy and forces long-range memory. The permutation comes from its
own `permutation_seed`, never from the training seed, so every run and both splits share it.

Views are batch transforms, applied lazily by `MappedSource` to whatever an inner source yields:
the inner source stays deterministic by (seed, step), and so does the view. The same wrapper
serves other per-batch transforms (uint8 -> normalised float, bytes -> one-hot). This module
also holds the small helpers other sources share: `data.`-prefixed value checks (from
cnn_rnn.config_checks), one_hot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from cnn_rnn import config_checks
from cnn_rnn.data.base import Batch, DataSource
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec

PIXEL_VIEWS = ("none", "sequential", "permuted")


def check_choice(field: str, value: Any, choices: Sequence[str]) -> str:
    """Return `value` if it is one of `choices`, else raise ConfigError on `data.<field>`."""
    return config_checks.check_choice(f"data.{field}", value, choices)


def check_int(field: str, value: Any, minimum: int) -> int:
    """Return `value` as an int >= `minimum`, else raise ConfigError on `data.<field>`."""
    return config_checks.check_int(f"data.{field}", value, minimum)


def check_bool(field: str, value: Any) -> bool:
    """Return `value` if it is a bool, else raise ConfigError on `data.<field>`."""
    if not isinstance(value, bool):
        raise ConfigError(f"data.{field}", f"must be true or false, got {value!r}")
    return value


def one_hot(tokens: np.ndarray, depth: int) -> np.ndarray:
    """Return the float32 one-hot encoding of integer `tokens` along a new last axis."""
    return np.eye(depth, dtype=np.float32)[tokens]


class MappedSource(DataSource):
    """A source whose batches are an inner source's batches passed through `fn`.

    `fn` must be a pure function of the batch (it must not mutate it), so the mapped source is as
    deterministic as the inner one, and act on each example alone, so that mapping some rows of a
    batch gives those rows of the mapped batch. `spec` describes the mapped batches.
    """

    def __init__(self, inner: DataSource, spec: TaskSpec, fn: Callable[[Batch], Batch]):
        self.inner = inner
        self.spec = spec
        self.fn = fn
        self.num_train = inner.num_train

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """Return the inner source's batch `step`, mapped."""
        return self.fn(self.inner.train_batch(step, batch_size))

    def train_rows(self, step: int, batch_size: int, start: int, stop: int) -> Batch:
        """Return rows [start, stop) of the inner batch `step`, mapped (`fn` works per row)."""
        return self.fn(self.inner.train_rows(step, batch_size, start, stop))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield the inner source's evaluation batches, mapped one at a time."""
        return map(self.fn, self.inner.eval_batches(batch_size))


def pixel_permutation(length: int, permutation_seed: int) -> np.ndarray:
    """Return the fixed permutation of `length` positions used by the "permuted" view."""
    rng = np.random.default_rng(np.random.SeedSequence([permutation_seed, length]))
    return rng.permutation(length)


def to_pixel_sequence(inputs: np.ndarray, permutation: np.ndarray | None = None) -> np.ndarray:
    """Flatten [B, *positions, C] to [B, L, C] in raster order, then reorder by `permutation`."""
    seq = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
    return seq if permutation is None else seq[:, permutation]


def pixel_view(source: DataSource, pixels: str = "none", permutation_seed: int = 0) -> DataSource:
    """Return `source` read pixel by pixel: "none" (unchanged), "sequential" or "permuted".

    Works on any source of fixed-size inputs [*positions, C] with one target per example: images
    [H, W, C] (tfds, digits) or sequences [L, C] (MNIST-1D-like arrays, where "sequential" is the
    identity and "permuted" shuffles the L positions).
    """
    check_choice("pixels", pixels, PIXEL_VIEWS)
    if pixels == "none":
        return source
    permutation_seed = check_int("permutation_seed", permutation_seed, 0)
    spec = source.spec
    if spec.many_to_many or len(spec.input_shape) < 2:
        raise ConfigError("data.pixels", f"needs inputs [*positions, channels] with one target "
                          f"per example; got {spec.kind} inputs {spec.input_shape}")
    length = int(np.prod(spec.input_shape[:-1]))
    perm = pixel_permutation(length, permutation_seed) if pixels == "permuted" else None
    new_spec = dataclasses.replace(spec, input_shape=(length, spec.input_shape[-1]))

    def view(batch: Batch) -> Batch:
        return {**batch, "inputs": to_pixel_sequence(batch["inputs"], perm)}

    return MappedSource(source, new_spec, view)
