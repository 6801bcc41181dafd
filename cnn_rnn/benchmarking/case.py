"""What one benchmark row measures (`Case`) and a case ready to time (`Prepared`).

The implementations of a case live in `cases.py` (our models, flax's, PyTorch's),
`engine_cases.py` and `parallel_cases.py`; all of them import these from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cnn_rnn.task import TaskSpec


@dataclasses.dataclass(frozen=True)
class Case:
    """What one benchmark row measures.

    Attributes:
      label: the row's name in tables and plots (e.g. "lstm", "lru-parallel").
      model: the registered model name ("lstm", "lru", ...).
      impl: one of IMPLS.
      seq_len, batch, hidden, input_dim, num_classes: the shape of the problem.
      options: keyword arguments of our model (impl "cnn_rnn" only).

    """

    label: str
    model: str
    impl: str
    seq_len: int
    batch: int
    hidden: int
    input_dim: int
    num_classes: int = 10
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Prepared:
    """A case ready to time: `step()` runs one blocking training step.

    Attributes:
      step: runs one training step and waits for it.
      compile_s: seconds to lower and compile the step (None for torch).
      peak_bytes: bytes the compiled step needs (see timing.PEAK_SOURCE; None for torch).
      params: number of trainable parameters.
      notes: free-form facts worth a column (e.g. torch's device and threads).

    """

    step: Callable[[], None]
    compile_s: float | None
    peak_bytes: int | None
    params: int
    notes: str = ""


def random_batch(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return inputs float32 [B, T, D] and integer labels [B], the same for every impl."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case.batch, case.seq_len, case.input_dim), dtype=np.float32)
    return x, rng.integers(0, case.num_classes, case.batch).astype(np.int32)


def case_spec(case: Case) -> TaskSpec:
    """Return the task every case trains on: classification of [T, D] inputs."""
    return TaskSpec("classification", case.num_classes, (case.seq_len, case.input_dim))
