"""Real datasets read with `tfds.data_source` (ArrayRecord random access, no TensorFlow needed).

Sources:
  mnist, fashion_mnist, cifar10  images [H, W, C] float32: pixels scaled to [0, 1], then
                                 normalised by the train split's per-channel mean and std;
                                 `pixels="sequential"|"permuted"` gives sMNIST / pMNIST / sCIFAR.
  imdb_reviews                   binary sentiment from UTF-8 bytes: inputs one-hot [max_len, 256]
                                 with a `mask` of the real bytes (shorter reviews are right-padded).
  tiny_shakespeare               next-byte prediction on windows of `seq_len` bytes (many-to-many);
                                 the losses' bits_per_step is bits per character.

Why bytes, one-hot: a byte vocabulary needs no tokenizer download, and models take float inputs
[B, T, C]. The one-hot expansion (1 KiB per byte) is done per batch; what is kept in memory is
compact: uint8 images, uint8 byte tokens truncated to `max_len`, one uint8 text stream. All five
sets are small in that form (CIFAR-10 train is 150 MB as uint8), so each split is decoded once, in
batched reads, into a memory-mapped cache beside the dataset (`tfds_cache`), and batches index it
by `base.sample_indices` (deterministic by seed, step).

Splits accept tfds slicing, e.g. eval_split="test[:1000]" or train_split="train[:90%]".
Preparing a dataset (download + ArrayRecord conversion) needs TensorFlow once; without it, or
offline, the source raises a one-line ConfigError with what to do (`tfds_prepare`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cnn_rnn.data.base import (
    ArraySource,
    Batch,
    DataSource,
    TaskSpec,
    batches_from_arrays,
    step_rng,
)
from cnn_rnn.data.images import check_view_options, classification_spec, normalized_source
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import MappedSource, check_bool, check_int, one_hot
from cnn_rnn.data.tfds_cache import Convert, cached_split
from cnn_rnn.data.tfds_prepare import open_split
from cnn_rnn.errors import ConfigError

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
NUM_BYTES = 256


# --- shared checks and reading ----------------------------------------------------------------

def check_common(data_dir: Any, cache: Any = True, cache_dir: Any = None, **splits: Any) -> None:
    """Raise ConfigError unless the paths are strings or None, cache a bool, the splits strings.

    `splits` maps each config field that names a tfds split to its value.
    """
    for field, path in (("data_dir", data_dir), ("cache_dir", cache_dir)):
        if path is not None and not isinstance(path, str):
            raise ConfigError(f"data.{field}", f"must be a path string or None, got {path!r}")
    check_bool("cache", cache)
    for field, split in splits.items():
        if not isinstance(split, str) or not split:
            raise ConfigError(f"data.{field}", f"must be a tfds split like 'train' or "
                              f"'test[:1000]', got {split!r}")


def to_bytes(text: Any) -> bytes:
    """Return a tfds Text value (bytes, str, or a 0-d numpy array of either) as UTF-8 bytes."""
    if isinstance(text, np.ndarray):
        text = text.item()
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def read_split(name: str, split: str, data_dir: str | None, field: str, convert: Convert,
               key: str, cache: bool, cache_dir: str | None) -> tuple[dict[str, np.ndarray], Any]:
    """Return a split's decoded arrays (cached or decoded once) and the dataset's tfds info."""
    ds = open_split(name, split, data_dir, field)
    if len(ds) == 0:
        raise ConfigError(f"data.{field}", f"split {split!r} of {name} is empty")
    arrays = cached_split(ds, split, convert, key=key, cache_dir=cache_dir, use_cache=cache)
    return arrays, ds.dataset_info


# --- images -----------------------------------------------------------------------------------

def image_arrays(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Return uint8 `image` [n, H, W, C] and int32 `label` [n] of decoded examples."""
    return {"image": np.stack([np.asarray(e["image"], np.uint8) for e in examples]),
            "label": np.array([e["label"] for e in examples], np.int32)}


def image_source(name: str, seed: int, data_dir: str | None, train_split: str,
                 eval_split: str, pixels: str, permutation_seed: int,
                 normalize: bool, cache: bool = True, cache_dir: str | None = None) -> DataSource:
    """Build the image classification source `name` (see the module docstring)."""
    check_common(data_dir, cache, cache_dir, train_split=train_split, eval_split=eval_split)
    check_view_options(pixels, permutation_seed, normalize)  # fail before the slow read
    train, info = read_split(name, train_split, data_dir, "train_split", image_arrays, "", cache,
                             cache_dir)
    test, _ = read_split(name, eval_split, data_dir, "eval_split", image_arrays, "", cache,
                         cache_dir)
    spec = classification_spec(int(info.features["label"].num_classes),
                               tuple(train["image"].shape[1:]), train["label"])
    return normalized_source(spec, {"inputs": train["image"], "targets": train["label"]},
                             {"inputs": test["image"], "targets": test["label"]}, seed,
                             normalize, pixels, permutation_seed)


def _register_image_source(name: str) -> None:
    @register_data(name)
    def build(seed: int, data_dir: str | None = None, train_split: str = "train",
              eval_split: str = "test", pixels: str = "none", permutation_seed: int = 0,
              normalize: bool = True, cache: bool = True,
              cache_dir: str | None = None) -> DataSource:
        return image_source(name, seed, data_dir, train_split, eval_split, pixels,
                            permutation_seed, normalize, cache, cache_dir)

    build.__doc__ = f"""Build tfds {name!r}: images [H, W, C], or pixel sequences [H*W, C].

    Args:
      seed: training-order seed.
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on.
      eval_split: tfds split to evaluate on.
      pixels: "none", "sequential" (raster order) or "permuted" (fixed random order).
      permutation_seed: seed of the "permuted" order, independent of `seed`.
      normalize: normalise by the train split's per-channel mean/std (else only scale to [0, 1]).
      cache: keep the decoded splits in a cache beside the dataset (see tfds_cache).
      cache_dir: root of that cache (None: <data_dir>/<name>/<version>/cnn_rnn_cache).
    """


for _name in IMAGE_DATASETS:
    _register_image_source(_name)


# --- IMDB reviews -----------------------------------------------------------------------------

def review_arrays(examples: Sequence[dict[str, Any]], max_len: int) -> dict[str, np.ndarray]:
    """Return the first `max_len` bytes of each review as uint8 `tokens`, `lengths`, `label`."""
    texts = [to_bytes(e["text"])[:max_len] for e in examples]
    tokens = np.zeros((len(texts), max_len), np.uint8)
    for i, text in enumerate(texts):
        tokens[i, :len(text)] = np.frombuffer(text, np.uint8)
    return {"tokens": tokens, "lengths": np.array([len(t) for t in texts], np.int32),
            "label": np.array([e["label"] for e in examples], np.int32)}


def load_reviews(split: str, data_dir: str | None, field: str, max_len: int, cache: bool = True,
                 cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """Return a split's first `max_len` bytes per review as uint8 `inputs`, `mask`, `targets`."""
    arrays, _ = read_split("imdb_reviews", split, data_dir, field,
                           functools.partial(review_arrays, max_len=max_len),
                           f"max_len={max_len}", cache, cache_dir)
    mask = np.arange(max_len)[None, :] < arrays["lengths"][:, None]
    return {"inputs": arrays["tokens"], "mask": mask, "targets": arrays["label"]}


def bytes_to_inputs(batch: Batch) -> Batch:
    """Turn uint8 byte `inputs` [B, T] into one-hot float32 [B, T, 256], zero where masked."""
    return {**batch, "inputs": one_hot(batch["inputs"], NUM_BYTES) * batch["mask"][..., None]}


@register_data("imdb_reviews")
def imdb_reviews(seed: int, data_dir: str | None = None, train_split: str = "train",
                 eval_split: str = "test", max_len: int = 512, cache: bool = True,
                 cache_dir: str | None = None) -> DataSource:
    """Build IMDB sentiment (2 classes) over UTF-8 bytes: inputs [max_len, 256] plus `mask`.

    Reviews longer than `max_len` bytes are truncated (the first bytes are kept); shorter ones are
    zero-padded on the right, and `mask` [B, max_len] marks the real bytes.

    Args:
      seed: training-order seed.
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on.
      eval_split: tfds split to evaluate on.
      max_len: bytes kept per review, the sequence length.
      cache: keep the decoded splits in a cache beside the dataset (see tfds_cache).
      cache_dir: root of that cache (None: <data_dir>/<name>/<version>/cnn_rnn_cache).
    """
    check_common(data_dir, cache, cache_dir, train_split=train_split, eval_split=eval_split)
    max_len = check_int("max_len", max_len, 1)
    train = load_reviews(train_split, data_dir, "train_split", max_len, cache, cache_dir)
    test = load_reviews(eval_split, data_dir, "eval_split", max_len, cache, cache_dir)
    spec = classification_spec(2, (max_len, NUM_BYTES), train["targets"])
    return MappedSource(ArraySource(spec, train, test, seed), spec, bytes_to_inputs)


# --- tiny Shakespeare -------------------------------------------------------------------------

def text_arrays(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Return the bytes of the examples' texts, concatenated, as uint8 `text`."""
    return {"text": np.frombuffer(b"".join(to_bytes(e["text"]) for e in examples), np.uint8)}


def load_text(split: str, data_dir: str | None, field: str, cache: bool = True,
              cache_dir: str | None = None) -> np.ndarray:
    """Return the bytes of all examples of a tiny_shakespeare split, concatenated, as uint8."""
    arrays, _ = read_split("tiny_shakespeare", split, data_dir, field, text_arrays, "", cache,
                           cache_dir)
    return arrays["text"]


def unigram_cross_entropy(train: np.ndarray, test: np.ndarray) -> float:
    """Return the nats per byte on `test` of add-one-smoothed byte frequencies from `train`."""
    counts = np.bincount(train, minlength=NUM_BYTES) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[test].mean())


class CharWindows(DataSource):
    """Next-byte prediction on windows of a byte stream.

    Training batch `step` takes windows at uniform random offsets drawn from (seed, step); the
    evaluation set tiles the eval text with non-overlapping windows. Inputs are the one-hot bytes
    [B, seq_len, 256]; targets [B, seq_len] are the same bytes shifted by one.
    """

    def __init__(self, spec: TaskSpec, train: np.ndarray, test: np.ndarray, seed: int):
        self.spec = spec
        self.train = train
        self.test = test
        self.seed = seed
        self.seq_len = spec.seq_len

    @staticmethod
    def window_batch(batch: Batch) -> Batch:
        """Turn uint8 `windows` [B, seq_len + 1] into one-hot inputs and next-byte targets."""
        windows = batch["windows"]
        return {"inputs": one_hot(windows[:, :-1], NUM_BYTES),
                "targets": windows[:, 1:].astype(np.int32), "weights": batch["weights"]}

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """Return windows at random offsets drawn from (seed, step)."""
        return self.train_rows(step, batch_size, 0, batch_size)

    def train_rows(self, step: int, batch_size: int, start: int, stop: int) -> Batch:
        """Return windows [start, stop) of batch `step`, building only those."""
        starts = step_rng(self.seed, step).integers(0, len(self.train) - self.seq_len, batch_size)
        windows = self.train[starts[start:stop, None] + np.arange(self.seq_len + 1)]
        return self.window_batch({"windows": windows,
                                  "weights": np.ones(len(windows), np.float32)})

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield the eval text as consecutive non-overlapping windows, last batch padded."""
        count = (len(self.test) - 1) // self.seq_len
        index = np.arange(count)[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        return map(self.window_batch, batches_from_arrays({"windows": self.test[index]},
                                                          batch_size))


@register_data("tiny_shakespeare")
def tiny_shakespeare(seed: int, data_dir: str | None = None, train_split: str = "train",
                     eval_split: str = "test", seq_len: int = 256, cache: bool = True,
                     cache_dir: str | None = None) -> DataSource:
    """Build character-level language modelling on tiny Shakespeare (bytes, 256 classes).

    The loss is nats per character and `bits_per_step` bits per character.

    Args:
      seed: training-order seed (window offsets).
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on ("train", "validation" or "test").
      eval_split: tfds split to evaluate on.
      seq_len: window length: steps per example.
      cache: keep the decoded splits in a cache beside the dataset (see tfds_cache).
      cache_dir: root of that cache (None: <data_dir>/<name>/<version>/cnn_rnn_cache).
    """
    check_common(data_dir, cache, cache_dir, train_split=train_split, eval_split=eval_split)
    seq_len = check_int("seq_len", seq_len, 1)
    train = load_text(train_split, data_dir, "train_split", cache, cache_dir)
    test = load_text(eval_split, data_dir, "eval_split", cache, cache_dir)
    shortest = min(len(train), len(test))
    if shortest <= seq_len:
        raise ConfigError("data.seq_len", f"must be below the shortest split's length "
                          f"({shortest} bytes), got {seq_len}")
    baseline = unigram_cross_entropy(train, test)
    spec = TaskSpec(kind="sequence_classification", num_outputs=NUM_BYTES,
                    input_shape=(seq_len, NUM_BYTES), baseline=baseline, baseline_metric="loss",
                    baseline_note=f"unigram byte frequencies: {baseline / np.log(2):.3f} bits/char")
    return CharWindows(spec, train, test, seed)
