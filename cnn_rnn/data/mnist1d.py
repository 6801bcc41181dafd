"""MNIST-1D (Greydanus & Kobak 2020), regenerated locally with the `mnist1d` package.

No download: `mnist1d.data.make_dataset` builds the 4000/1000 split from its ten templates with a
fixed seed, so every machine gets the same data. Examples are sequences [40, 1].
"""

from __future__ import annotations

import functools

import numpy as np

from cnn_rnn.data.base import ArraySource
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_int
from cnn_rnn.task import TaskSpec


@functools.lru_cache(maxsize=4)
def load_mnist1d(shuffle_positions: bool = False, num_samples: int = 5000,
                 dataset_seed: int = 42) -> dict[str, np.ndarray]:
    """The MNIST-1D arrays: x [N, 40] float32, y [N] int32, x_test, y_test.

    `shuffle_positions` applies the paper's fixed permutation of the 40 positions, which destroys
    spatial locality (the "shuffled" variant that hurts CNNs more than MLPs).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.shuffle_seq = bool(shuffle_positions)
    args.num_samples = int(num_samples)
    args.seed = int(dataset_seed)
    # make_dataset seeds numpy's global generator; keep the caller's global state untouched.
    state = np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {
        "x": d["x"].astype(np.float32), "y": d["y"].astype(np.int32),
        "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int32),
    }


@register_data("mnist1d")
def mnist1d(seed: int, shuffle_positions: bool = False, num_samples: int = 5000,
            dataset_seed: int = 42) -> ArraySource:
    """MNIST-1D as a sequence-classification source: inputs [40, 1], 10 classes.

    Args:
      seed: training-order seed (which examples make up each batch).
      shuffle_positions: the paper's shuffled-positions variant.
      num_samples: total examples before the 80/20 split (paper: 5000).
      dataset_seed: the generator's seed (paper: 42).
    """
    num_samples = check_int("num_samples", num_samples, 50)
    dataset_seed = check_int("dataset_seed", dataset_seed, 0)
    d = load_mnist1d(bool(shuffle_positions), num_samples, dataset_seed)
    spec = TaskSpec(kind="classification", num_outputs=10, input_shape=(d["x"].shape[1], 1),
                    baseline=0.1, baseline_metric="accuracy",
                    baseline_note="chance: 10 balanced classes")
    train = {"inputs": d["x"][..., None], "targets": d["y"]}
    test = {"inputs": d["x_test"][..., None], "targets": d["y_test"]}
    return ArraySource(spec, train, test, seed)
