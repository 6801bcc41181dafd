"""The task a model must solve: what it outputs and how it is scored (`TaskSpec`).

Shared by data sources (which describe their task), models (sized by it) and losses (which score
it), so that none of them imports another's package for it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

TaskKind = Literal["classification", "regression", "sequence_classification",
                   "sequence_regression", "seq2seq"]
TASK_KINDS = ("classification", "regression", "sequence_classification", "sequence_regression",
              "seq2seq")
MANY_TO_MANY_KINDS = ("sequence_classification", "sequence_regression")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a model must output and how it is scored.

    Attributes:
      kind: one of TASK_KINDS; the sequence_* kinds mean many-to-many outputs; seq2seq means an
        output sequence of its own length `target_len`, produced by an encoder-decoder.
      num_outputs: classes (classification kinds and seq2seq) or regression targets.
      input_shape: one example's input shape, without the batch axis, e.g. (40, 1).
      baseline: the trivial baseline of `baseline_metric` (e.g. 1/6 MSE on adding), or None.
      baseline_metric: the metric name the baseline is in ("loss", "accuracy", ...).
      baseline_note: how the baseline is obtained, for logs and reports.
      target_len: seq2seq only: the length of the output sequence the decoder emits.
    """

    kind: TaskKind
    num_outputs: int
    input_shape: tuple[int, ...]
    baseline: float | None = None
    baseline_metric: str = "accuracy"
    baseline_note: str = ""
    target_len: int | None = None

    @property
    def many_to_many(self) -> bool:
        """Whether the model must emit an output at every input step."""
        return self.kind in MANY_TO_MANY_KINDS

    @property
    def seq_len(self) -> int:
        """Length of the time (or position) axis: the first axis of an example."""
        return self.input_shape[0]
