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
sets are small in that form (CIFAR-10 train is 150 MB as uint8), so each split is read once when
the source is built, and batches index it by `base.sample_indices` (deterministic by seed, step).

Splits accept tfds slicing, e.g. eval_split="test[:1000]" or train_split="train[:90%]".
Preparing a dataset (download + ArrayRecord conversion) needs TensorFlow once; without it the
source raises a one-line ConfigError with the command to run.
"""

from __future__ import annotations

import importlib.util
import logging
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
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import (
    PIXEL_VIEWS,
    MappedSource,
    check_choice,
    check_int,
    one_hot,
    pixel_view,
)
from cnn_rnn.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
NUM_BYTES = 256


# --- opening a split, or saying how to prepare it ---------------------------------------------

def tensorflow_available() -> bool:
    """Return whether TensorFlow is importable (tfds needs it to prepare, not to read)."""
    return importlib.util.find_spec("tensorflow") is not None


def prepare_command(name: str, data_dir: str | None) -> str:
    """Return the shell command that prepares `name` as ArrayRecord in `data_dir`."""
    return (f"pip install tensorflow && python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{name}', data_dir={data_dir!r})"
            f".download_and_prepare(file_format='array_record')\"")


def open_split(name: str, split: str, data_dir: str | None, field: str) -> Sequence[Any]:
    """Return the random-access tfds data source of `name`/`split`, preparing it if possible.

    `field` names the config key that chose `split`, for the error a bad split gives.
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    # An unprepared dataset reads as TFRecord-only, which has no random access: NotImplementedError.
    except (NotImplementedError, ValueError, KeyError) as e:
        error = e
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not tensorflow_available():
            raise ConfigError("data.data_dir", f"tfds dataset {name!r} is not prepared in "
                              f"{builder.data_dir}; preparing it needs TensorFlow once: "
                              f"{prepare_command(name, data_dir)}")
        log.info("Preparing tfds %s in %s as ArrayRecord (downloads once)", name, builder.data_dir)
        builder.download_and_prepare(file_format="array_record")
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    if isinstance(error, NotImplementedError):
        raise ConfigError("data.data_dir", f"tfds dataset {name!r} in {builder.data_dir} is "
                          f"prepared as TFRecord only (no random access); prepare it as "
                          f"ArrayRecord in another data_dir: {prepare_command(name, data_dir)}")
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ConfigError(f"data.{field}", f"cannot read split {split!r} of {name}: {first_line}")


def check_common(data_dir: Any, train_split: Any, eval_split: Any) -> None:
    """Raise ConfigError unless data_dir is a path or None and both splits are strings."""
    if data_dir is not None and not isinstance(data_dir, str):
        raise ConfigError("data.data_dir", f"must be a path string or None, got {data_dir!r}")
    for field, split in (("train_split", train_split), ("eval_split", eval_split)):
        if not isinstance(split, str) or not split:
            raise ConfigError(f"data.{field}", f"must be a tfds split like 'train' or "
                              f"'test[:1000]', got {split!r}")


def to_bytes(text: Any) -> bytes:
    """Return a tfds Text value (bytes, str, or a 0-d numpy array of either) as UTF-8 bytes."""
    if isinstance(text, np.ndarray):
        text = text.item()
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def majority_fraction(labels: np.ndarray) -> float:
    """Return the accuracy of always predicting the most frequent label."""
    return float(np.bincount(labels).max() / len(labels))


# --- images -----------------------------------------------------------------------------------

def load_images(name: str, split: str, data_dir: str | None,
                field: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (uint8 images [N, H, W, C], int32 labels [N], number of classes) of a split."""
    ds = open_split(name, split, data_dir, field)
    if len(ds) == 0:
        raise ConfigError(f"data.{field}", f"split {split!r} of {name} is empty")
    first = np.asarray(ds[0]["image"])
    images = np.empty((len(ds), *first.shape), np.uint8)  # filled in place: no second copy
    labels = np.empty(len(ds), np.int32)
    for i in range(len(ds)):
        example = ds[i]
        images[i] = example["image"]
        labels[i] = example["label"]
    return images, labels, int(ds.dataset_info.features["label"].num_classes)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-channel mean and std of uint8 `images` scaled to [0, 1], as float32 [C].

    Counted with a 256-bin histogram per channel, so no float copy of the whole set is made.
    """
    levels = np.arange(256) / 255.0
    means, stds = [], []
    for c in range(images.shape[-1]):
        counts = np.bincount(images[..., c].ravel(), minlength=256)
        mean = counts @ levels / counts.sum()
        means.append(mean)
        stds.append(np.sqrt(max(counts @ levels**2 / counts.sum() - mean**2, 1e-12)))
    return np.array(means, np.float32), np.array(stds, np.float32)


def image_source(name: str, seed: int, data_dir: str | None, train_split: str,
                 eval_split: str, pixels: str, permutation_seed: int,
                 normalize: bool) -> DataSource:
    """Build the image classification source `name` (see the module docstring)."""
    check_common(data_dir, train_split, eval_split)
    check_choice("pixels", pixels, PIXEL_VIEWS)  # fail before the slow read
    check_int("permutation_seed", permutation_seed, 0)
    if not isinstance(normalize, bool):
        raise ConfigError("data.normalize", f"must be true or false, got {normalize!r}")
    train_x, train_y, num_classes = load_images(name, train_split, data_dir, "train_split")
    test_x, test_y, _ = load_images(name, eval_split, data_dir, "eval_split")
    mean, std = channel_stats(train_x) if normalize else (np.float32(0.0), np.float32(1.0))
    scale, shift = 1.0 / (255.0 * std), -mean / std

    def to_float(batch: Batch) -> Batch:
        return {**batch, "inputs": batch["inputs"].astype(np.float32) * scale + shift}

    spec = TaskSpec(kind="classification", num_outputs=num_classes,
                    input_shape=tuple(train_x.shape[1:]),
                    baseline=majority_fraction(train_y), baseline_metric="accuracy",
                    baseline_note="majority class of the train split")
    inner = ArraySource(spec, {"inputs": train_x, "targets": train_y},
                        {"inputs": test_x, "targets": test_y}, seed)
    return pixel_view(MappedSource(inner, spec, to_float), pixels, permutation_seed)


def _register_image_source(name: str) -> None:
    @register_data(name)
    def build(seed: int, data_dir: str | None = None, train_split: str = "train",
              eval_split: str = "test", pixels: str = "none", permutation_seed: int = 0,
              normalize: bool = True) -> DataSource:
        return image_source(name, seed, data_dir, train_split, eval_split, pixels,
                            permutation_seed, normalize)

    build.__doc__ = f"""Build tfds {name!r}: images [H, W, C], or pixel sequences [H*W, C].

    Args:
      seed: training-order seed.
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on.
      eval_split: tfds split to evaluate on.
      pixels: "none", "sequential" (raster order) or "permuted" (fixed random order).
      permutation_seed: seed of the "permuted" order, independent of `seed`.
      normalize: normalise by the train split's per-channel mean/std (else only scale to [0, 1]).
    """


for _name in IMAGE_DATASETS:
    _register_image_source(_name)


# --- IMDB reviews -----------------------------------------------------------------------------

def load_reviews(split: str, data_dir: str | None, field: str,
                 max_len: int) -> dict[str, np.ndarray]:
    """Return a split's first `max_len` bytes per review as uint8 `inputs`, `mask`, `targets`."""
    ds = open_split("imdb_reviews", split, data_dir, field)
    tokens = np.zeros((len(ds), max_len), np.uint8)
    lengths = np.empty(len(ds), np.int64)
    targets = np.empty(len(ds), np.int32)
    for i in range(len(ds)):
        example = ds[i]
        text = to_bytes(example["text"])[:max_len]
        tokens[i, :len(text)] = np.frombuffer(text, np.uint8)
        lengths[i] = len(text)
        targets[i] = example["label"]
    mask = np.arange(max_len)[None, :] < lengths[:, None]
    return {"inputs": tokens, "mask": mask, "targets": targets}


def bytes_to_inputs(batch: Batch) -> Batch:
    """Turn uint8 byte `inputs` [B, T] into one-hot float32 [B, T, 256], zero where masked."""
    return {**batch, "inputs": one_hot(batch["inputs"], NUM_BYTES) * batch["mask"][..., None]}


@register_data("imdb_reviews")
def imdb_reviews(seed: int, data_dir: str | None = None, train_split: str = "train",
                 eval_split: str = "test", max_len: int = 512) -> DataSource:
    """Build IMDB sentiment (2 classes) over UTF-8 bytes: inputs [max_len, 256] plus `mask`.

    Reviews longer than `max_len` bytes are truncated (the first bytes are kept); shorter ones are
    zero-padded on the right, and `mask` [B, max_len] marks the real bytes.

    Args:
      seed: training-order seed.
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on.
      eval_split: tfds split to evaluate on.
      max_len: bytes kept per review, the sequence length.

    """
    check_common(data_dir, train_split, eval_split)
    max_len = check_int("max_len", max_len, 1)
    train = load_reviews(train_split, data_dir, "train_split", max_len)
    test = load_reviews(eval_split, data_dir, "eval_split", max_len)
    spec = TaskSpec(kind="classification", num_outputs=2, input_shape=(max_len, NUM_BYTES),
                    baseline=majority_fraction(train["targets"]), baseline_metric="accuracy",
                    baseline_note="majority class of the train split")
    return MappedSource(ArraySource(spec, train, test, seed), spec, bytes_to_inputs)


# --- tiny Shakespeare -------------------------------------------------------------------------

def load_text(split: str, data_dir: str | None, field: str) -> np.ndarray:
    """Return the bytes of all examples of a tiny_shakespeare split, concatenated, as uint8."""
    ds = open_split("tiny_shakespeare", split, data_dir, field)
    return np.frombuffer(b"".join(to_bytes(ds[i]["text"]) for i in range(len(ds))), np.uint8)


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
        starts = step_rng(self.seed, step).integers(0, len(self.train) - self.seq_len, batch_size)
        windows = self.train[starts[:, None] + np.arange(self.seq_len + 1)]
        return self.window_batch({"windows": windows,
                                  "weights": np.ones(batch_size, np.float32)})

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield the eval text as consecutive non-overlapping windows, last batch padded."""
        count = (len(self.test) - 1) // self.seq_len
        index = np.arange(count)[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        return map(self.window_batch, batches_from_arrays({"windows": self.test[index]},
                                                          batch_size))


@register_data("tiny_shakespeare")
def tiny_shakespeare(seed: int, data_dir: str | None = None, train_split: str = "train",
                     eval_split: str = "test", seq_len: int = 256) -> DataSource:
    """Build character-level language modelling on tiny Shakespeare (bytes, 256 classes).

    The loss is nats per character and `bits_per_step` bits per character.

    Args:
      seed: training-order seed (window offsets).
      data_dir: tfds data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
      train_split: tfds split to train on ("train", "validation" or "test").
      eval_split: tfds split to evaluate on.
      seq_len: window length: steps per example.

    """
    check_common(data_dir, train_split, eval_split)
    seq_len = check_int("seq_len", seq_len, 1)
    train = load_text(train_split, data_dir, "train_split")
    test = load_text(eval_split, data_dir, "eval_split")
    shortest = min(len(train), len(test))
    if shortest <= seq_len:
        raise ConfigError("data.seq_len", f"must be below the shortest split's length "
                          f"({shortest} bytes), got {seq_len}")
    baseline = unigram_cross_entropy(train, test)
    spec = TaskSpec(kind="sequence_classification", num_outputs=NUM_BYTES,
                    input_shape=(seq_len, NUM_BYTES), baseline=baseline, baseline_metric="loss",
                    baseline_note=f"unigram byte frequencies: {baseline / np.log(2):.3f} bits/char")
    return CharWindows(spec, train, test, seed)
