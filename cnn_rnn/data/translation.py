"""A generated translation-like task: a symbol sequence to its reversal or sorted form.

No download; the difficulty grows with the length.

Source: `n` symbols drawn uniformly from `vocab` (n uniform in [min_length, length]), one-hot
[length, vocab], right-padded, with a mask of the real steps when lengths vary. Target: the
transformed symbols, then an end token (id `vocab`), then padding (weight 0) up to length + 1
steps; `target_weights` counts the symbols and the end token. Classes: vocab + 1.

  reverse   y = x_n .. x_1: the first output needs the LAST input, the last output the FIRST, so
            a decoder that only sees the encoder's final state must hold the whole sequence in it.
  sort      y = the symbols in ascending order: the decoder must count every symbol.

Metrics (seq2seq task kind): per-token accuracy over the counted steps and exact match (every
counted token right). The batch at step s is drawn from `step_rng(seed, s)` (`GeneratedSource`);
the evaluation set is a fixed draw shared by every training seed.
"""

from __future__ import annotations

import functools

import numpy as np

from cnn_rnn.data.base import Batch
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_choice, check_int, one_hot
from cnn_rnn.data.synthetic import GeneratedSource
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec

TASKS = ("reverse", "sort")
MAX_VOCAB = 1024


def translation_batch(rng: np.random.Generator, n: int, task: str, length: int,
                      min_length: int, vocab: int) -> Batch:
    """`n` examples: inputs [n, length, vocab], targets and target_weights [n, length + 1]."""
    lengths = rng.integers(min_length, length + 1, n)
    symbols = rng.integers(0, vocab, (n, length))
    real = np.arange(length)[None, :] < lengths[:, None]
    end = vocab
    targets = np.full((n, length + 1), end, np.int32)
    for i, k in enumerate(lengths):
        seq = symbols[i, :k]
        targets[i, :k] = seq[::-1] if task == "reverse" else np.sort(seq)
    inputs = one_hot(np.where(real, symbols, 0), vocab) * real[..., None]
    batch = {"inputs": inputs.astype(np.float32), "targets": targets,
             "target_weights": (np.arange(length + 1)[None, :] <= lengths[:, None]).astype(
                 np.float32)}
    if min_length < length:
        batch["mask"] = real
    return batch


@register_data("translation")
def translation(seed: int, task: str = "reverse", length: int = 10, min_length: int | None = None,
                vocab: int = 10, num_eval: int = 500) -> GeneratedSource:
    """Build the sequence-transduction source.

    Args:
      seed: training-stream seed.
      task: "reverse" or "sort".
      length: the longest source (the decoder emits length + 1 tokens: symbols, then the end).
      min_length: the shortest source (None = length: every source has `length` symbols).
      vocab: number of symbols (2..1024).
      num_eval: size of the fixed evaluation set.

    """
    check_choice("task", task, TASKS)
    length = check_int("length", length, 1)
    min_length = length if min_length is None else check_int("min_length", min_length, 1)
    if min_length > length:
        raise ConfigError("data.min_length", f"{min_length} is longer than length={length}; "
                          f"accepted: 1..{length}")
    vocab = check_int("vocab", vocab, 2)
    if vocab > MAX_VOCAB:
        raise ConfigError("data.vocab", f"must be at most {MAX_VOCAB} symbols, got {vocab}")
    num_eval = check_int("num_eval", num_eval, 1)
    spec = TaskSpec(kind="seq2seq", num_outputs=vocab + 1, input_shape=(length, vocab),
                    target_len=length + 1, baseline=1.0 / vocab, baseline_metric="accuracy",
                    baseline_note=f"per-token chance: 1/{vocab} symbols")
    gen = functools.partial(translation_batch, task=task, length=length, min_length=min_length,
                            vocab=vocab)
    return GeneratedSource(spec, gen, seed, num_eval)
