"""Generated tasks that need no download: the adding problem, copy memory and procedural digits.

Every task is an infinite stream: the training batch at step s is drawn from `step_rng(seed, s)`,
a pure function of (seed, s), so a resumed run sees the same batches. The evaluation set is a
fixed draw from a separate stream that does not depend on the training seed, so runs with
different seeds are scored on the same examples (like a dataset's test split).

Lengths come from the config (`length`), which is what the vanishing-gradient ablations sweep.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np

from cnn_rnn.config_checks import check_number
from cnn_rnn.data.base import Batch, DataSource, batches_from_arrays, step_rng
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_choice, check_int, one_hot, pixel_view
from cnn_rnn.task import TaskSpec

GenerateFn = Callable[[np.random.Generator, int], Batch]

TRAIN_STREAM = 0
EVAL_STREAM = 2  # stream 1 is base.sample_indices' epoch permutations
EVAL_SEED = 0

ADDING_PLACEMENTS = ("halves", "anywhere")
COPY_SYMBOLS = 10  # symbols to remember (Arjovsky et al. 2016)
COPY_ALPHABET = 8  # drawn from classes 1..8; 0 is the blank and 9 the delimiter
COPY_BLANK, COPY_DELIMITER = 0, 9


class GeneratedSource(DataSource):
    """A source that draws every batch from `generate(rng, n)`.

    Training batch `step` uses `step_rng(seed, step)`; the evaluation set is `num_eval` examples
    drawn once from a stream of its own, shared by all training seeds.
    """

    def __init__(self, spec: TaskSpec, generate: GenerateFn, seed: int, num_eval: int):
        self.spec = spec
        self.generate = generate
        self.seed = seed
        self.num_eval = num_eval

    def train_batch(self, step: int, batch_size: int) -> Batch:
        """Return fresh examples drawn from (seed, step)."""
        batch = self.generate(step_rng(self.seed, step, TRAIN_STREAM), batch_size)
        batch["weights"] = np.ones(batch_size, np.float32)
        return batch

    @functools.cached_property
    def eval_set(self) -> Batch:
        """Return the fixed evaluation examples, generated on first use."""
        return self.generate(step_rng(EVAL_SEED, 0, EVAL_STREAM), self.num_eval)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield the evaluation set in order, the last batch padded with weights 0."""
        return batches_from_arrays(self.eval_set, batch_size)


# --- adding problem ---------------------------------------------------------------------------

def adding_batch(rng: np.random.Generator, n: int, length: int, placement: str) -> Batch:
    """`n` adding-problem examples: inputs [n, length, 2], targets [n, 1].

    Channel 0 holds values uniform in [0, 1], channel 1 marks exactly two positions; the target
    is the sum of the two marked values. "halves" puts one marker in each half (Arjovsky 2016),
    "anywhere" puts them at two distinct uniform positions (Bai 2018).
    """
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    if placement == "halves":
        first = rng.integers(0, half, n)
        second = rng.integers(half, length, n)
    else:
        first = rng.integers(0, length, n)
        second = rng.integers(0, length - 1, n)
        second += second >= first  # skip `first`: two distinct uniform positions
    rows = np.arange(n)
    markers = np.zeros((n, length), np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return {"inputs": np.stack([values, markers], axis=-1), "targets": targets[:, None]}


@register_data("adding")
def adding(seed: int, length: int = 100, placement: str = "halves",
           num_eval: int = 1000) -> GeneratedSource:
    """Build the adding problem (Hochreiter & Schmidhuber 1997) as a regression source.

    Args:
      seed: training-stream seed.
      length: sequence length T (Bai et al. 2018 report T=600).
      placement: "halves" (one marker per half, Arjovsky 2016) or "anywhere" (Bai 2018).
      num_eval: size of the fixed evaluation set.

    """
    length = check_int("length", length, 2)
    check_choice("placement", placement, ADDING_PLACEMENTS)
    num_eval = check_int("num_eval", num_eval, 1)
    # Predicting 1 scores Var(X1 + X2) = 2/12 for any placement of two uniform values.
    spec = TaskSpec(kind="regression", num_outputs=1, input_shape=(length, 2),
                    baseline=1 / 6, baseline_metric="loss",
                    baseline_note="MSE of always predicting 1 (the mean target): 1/6")
    gen = functools.partial(adding_batch, length=length, placement=placement)
    return GeneratedSource(spec, gen, seed, num_eval)


# --- copy memory ------------------------------------------------------------------------------

def copy_batch(rng: np.random.Generator, n: int, length: int) -> Batch:
    """`n` copy-memory examples of total length `length` + 20.

    Input tokens: 10 symbols from 1..8, `length` - 1 blanks, the delimiter 9, 10 blanks, fed as
    one-hot [n, length + 20, 10]. Targets [n, length + 20]: blanks, then the 10 symbols in the last
    10 steps. The loss counts every step; `accuracy_weights` marks only the recalled symbols.
    """
    total = length + 2 * COPY_SYMBOLS
    symbols = rng.integers(1, COPY_ALPHABET + 1, (n, COPY_SYMBOLS))
    tokens = np.full((n, total), COPY_BLANK, np.int32)
    tokens[:, :COPY_SYMBOLS] = symbols
    tokens[:, length + COPY_SYMBOLS - 1] = COPY_DELIMITER
    targets = np.full((n, total), COPY_BLANK, np.int32)
    targets[:, -COPY_SYMBOLS:] = symbols
    recall = np.zeros((n, total), np.float32)
    recall[:, -COPY_SYMBOLS:] = 1.0
    return {"inputs": one_hot(tokens, COPY_DELIMITER + 1), "targets": targets,
            "accuracy_weights": recall}


@register_data("copy")
def copy(seed: int, length: int = 100, num_eval: int = 1000) -> GeneratedSource:
    """Build copy memory (Arjovsky et al. 2016) as a many-to-many classification source.

    Outputs have 9 classes (blank + 8 symbols): the delimiter is never a target, so it needs no
    output unit. The accuracy metric counts only the 10 recalled symbols.

    Args:
      seed: training-stream seed.
      length: the delay T; sequences have T + 20 steps (Bai et al. 2018 report T=1000).
      num_eval: size of the fixed evaluation set.

    """
    length = check_int("length", length, 1)
    num_eval = check_int("num_eval", num_eval, 1)
    total = length + 2 * COPY_SYMBOLS
    # A memoryless model predicts blanks perfectly and guesses the 10 symbols uniformly.
    baseline = COPY_SYMBOLS * math.log(COPY_ALPHABET) / total
    spec = TaskSpec(kind="sequence_classification", num_outputs=COPY_ALPHABET + 1,
                    input_shape=(total, COPY_DELIMITER + 1), baseline=baseline,
                    baseline_metric="loss",
                    baseline_note=f"memoryless cross-entropy 10*ln(8)/(T+20) = {baseline:.4g}")
    return GeneratedSource(spec, functools.partial(copy_batch, length=length), seed, num_eval)


# --- procedural digits ------------------------------------------------------------------------

_FONT = (  # 5x7 bitmaps of the digits 0..9
    (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
)


@functools.lru_cache(maxsize=1)
def digit_glyphs() -> np.ndarray:
    """Return the ten digit glyphs, upscaled x2: float32 [10, 14, 10], strokes at 1."""
    bitmaps = np.array([[[c == "#" for c in row] for row in g] for g in _FONT], np.float32)
    return np.kron(bitmaps, np.ones((1, 2, 2), np.float32))


def digits_batch(rng: np.random.Generator, n: int, size: int, noise: float) -> Batch:
    """`n` digit images [n, size, size, 1] in [0, 1]: a shifted glyph of random ink plus noise."""
    glyphs = digit_glyphs()
    gh, gw = glyphs.shape[1:]
    labels = rng.integers(0, 10, n)
    top = rng.integers(0, size - gh + 1, n)
    left = rng.integers(0, size - gw + 1, n)
    ink = rng.uniform(0.5, 1.0, n).astype(np.float32)
    images = np.zeros((n, size, size), np.float32)
    rows = top[:, None, None] + np.arange(gh)[None, :, None]
    cols = left[:, None, None] + np.arange(gw)[None, None, :]
    images[np.arange(n)[:, None, None], rows, cols] = glyphs[labels] * ink[:, None, None]
    images += noise * rng.standard_normal(images.shape, dtype=np.float32)
    return {"inputs": np.clip(images, 0.0, 1.0)[..., None], "targets": labels.astype(np.int32)}


@register_data("digits")
def digits(seed: int, size: int = 16, noise: float = 0.2, pixels: str = "none",
           permutation_seed: int = 0, num_eval: int = 1000) -> DataSource:
    """Build procedural digit images, an offline stand-in for MNIST (sMNIST/pMNIST via `pixels`).

    Each image is one of ten 5x7 font glyphs, doubled to 14x10, placed at a random offset on a
    `size` x `size` canvas with random ink intensity and Gaussian pixel noise.

    Args:
      seed: training-stream seed.
      size: canvas side (>= 14); the pixel views have size**2 steps (28 gives sMNIST's 784).
      noise: standard deviation of the additive pixel noise (>= 0).
      pixels: "none" (images [size, size, 1]), "sequential" or "permuted" ([size**2, 1]).
      permutation_seed: seed of the fixed "permuted" order, independent of `seed`.
      num_eval: size of the fixed evaluation set.

    """
    size = check_int("size", size, digit_glyphs().shape[1])
    num_eval = check_int("num_eval", num_eval, 1)
    noise = check_number("data.noise", noise)
    spec = TaskSpec(kind="classification", num_outputs=10, input_shape=(size, size, 1),
                    baseline=0.1, baseline_metric="accuracy",
                    baseline_note="chance: 10 uniform classes")
    gen = functools.partial(digits_batch, size=size, noise=float(noise))
    return pixel_view(GeneratedSource(spec, gen, seed, num_eval), pixels, permutation_seed)
