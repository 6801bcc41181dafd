"""The interface every data source implements, and the task description models and losses read.

A batch is a dict of numpy arrays:
  inputs          float32 [B, *spec.input_shape]
  targets         int32 [B] (classification), float32 [B, num_outputs] (regression),
                  int32 [B, T] (sequence_classification: one label per step; seq2seq: the
                  output sequence), or float32 [B, T, num_outputs] (sequence_regression)
  mask            optional bool [B, T]: which input steps are real (variable-length batches)
  target_weights  optional float32 [B, T]: which per-step targets count (sequence tasks)
  weights         float32 [B]: 1 for real examples, 0 for padding (only eval batches pad)
  target_scale    optional float32 [B, num_outputs] (regression kinds): the standard deviation
                  that maps normalised targets back to original units, for metrics in those units
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterator

import numpy as np

from cnn_rnn.task import TaskSpec

Batch = dict[str, np.ndarray]


class DataSource(abc.ABC):
    """A deterministic source of training and evaluation batches.

    `train_batch(step, batch_size)` must be a pure function of the source's seed and `step`, so
    that a resumed run sees exactly the batches an uninterrupted one would have seen.
    `num_train` is the size of a finite training set (None for generated data), so that a batch
    larger than the whole set can be refused.
    """

    spec: TaskSpec
    num_train: int | None = None

    @abc.abstractmethod
    def train_batch(self, step: int, batch_size: int) -> Batch:
        """The training batch for optimizer step `step`."""

    def train_rows(self, step: int, batch_size: int, start: int, stop: int) -> Batch:
        """Rows [start, stop) of the global training batch `step` (one process's share).

        Equal to `train_batch(step, batch_size)[start:stop]` for every key; sources that can
        build only those rows (ArraySource) override this to skip the rest.
        """
        return {k: v[start:stop] for k, v in self.train_batch(step, batch_size).items()}

    @abc.abstractmethod
    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """The fixed evaluation set, in full batches whose `weights` mark padding with 0."""


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A numpy generator that depends only on (seed, step, stream)."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, step]))


def batches_from_arrays(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[Batch]:
    """Cut equal-length arrays into full batches, zero-padding the last with weights 0."""
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pad = batch_size - (stop - start)
        batch = {}
        for key, value in arrays.items():
            chunk = value[start:stop]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            batch[key] = chunk
        weights = np.ones(batch_size, np.float32)
        if pad:
            weights[batch_size - pad :] = 0.0
        batch["weights"] = weights
        yield batch


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The read-only order of range(n) in `epoch`; kept so each step does not redraw it."""
    perm = np.random.default_rng(np.random.SeedSequence([seed, 1, epoch])).permutation(n)
    perm.flags.writeable = False
    return perm


def sample_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of the training batch at `step`: epochs are seeded permutations of range(n).

    Step s reads positions [s*B, (s+1)*B) of the concatenation of per-epoch permutations, so
    each epoch sees every example once and the result depends only on (seed, step).
    """
    start = step * batch_size
    out = np.empty(batch_size, np.int64)
    filled = 0
    while filled < batch_size:
        epoch, offset = divmod(start + filled, n)
        perm = epoch_permutation(seed, epoch, n)
        take = min(batch_size - filled, n - offset)
        out[filled : filled + take] = perm[offset : offset + take]
        filled += take
    return out


class ArraySource(DataSource):
    """A source over in-memory train/test arrays (MNIST-1D, small tfds sets ...).

    Subclasses (or callers) provide `train` and `test` dicts of equal-length arrays with at least
    `inputs` and `targets`.
    """

    def __init__(self, spec: TaskSpec, train: dict[str, np.ndarray],
                 test: dict[str, np.ndarray], seed: int):
        self.spec = spec
        self.train = train
        self.test = test
        self.seed = seed
        self._n = self.num_train = len(train["inputs"])

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """Batch `step` of the seeded per-epoch shuffle."""
        return self.train_rows(step, batch_size, 0, batch_size)

    def train_rows(self, step: int, batch_size: int, start: int, stop: int) -> Batch:
        """Rows [start, stop) of batch `step`, gathered without building the others."""
        idx = sample_indices(self.seed, step, self._n, batch_size)[start:stop]
        batch = {k: v[idx] for k, v in self.train.items()}
        batch["weights"] = np.ones(len(idx), np.float32)
        return batch

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """The test split in order, last batch padded."""
        return batches_from_arrays(self.test, batch_size)
