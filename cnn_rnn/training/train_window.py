"""Training metrics averaged over a window of steps, and the divergence check on each step.

The loop closes a window every `log_every` steps and at the last step. A checkpoint may fall
inside a window (`checkpoint_every` need not be a multiple of `log_every`): it stores the
window's steps so far (`pending()`), and a run resumed from it starts with them (`restore()`), so
it logs exactly the records an uninterrupted run logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from cnn_rnn.errors import NonFiniteError
from cnn_rnn.training.losses import finalize

_NONFINITE = (("loss", "loss"), ("grad", "gradient or updated parameters"))
StepValues = dict[str, float]


def sums_to_metrics(sums: Mapping[str, Any]) -> dict[str, float]:
    """Means from `<name>_sum` / `<name>_count` totals (see losses.finalize)."""
    pairs = {k[: -len("_sum")]: (sums[k], sums[k[: -len("_sum")] + "_count"])
             for k in sums if k.endswith("_sum")}
    return finalize(pairs)


def _to_json(value: float) -> float | str:
    # JSON has no NaN/Infinity; float() reads these strings back.
    return value if math.isfinite(value) else str(value)


class TrainWindow:
    """The per-step train metrics since the last flush (fetched from the device lazily)."""

    def __init__(self, learning_rate: Callable[[int], Any], stop_on_nonfinite: bool,
                 fetch: Callable[[Any], Mapping[str, Any]] | None = None):
        # `fetch`: one replica of a step's outputs as host values (the backend's); default: a
        # pmap output of this process, read at device 0.
        self._fetch_one = fetch or (lambda m: {k: np.asarray(v)[0]
                                               for k, v in jax.device_get(m).items()})
        self._on_device: list[tuple[int, Any]] = []
        self._host: list[tuple[int, StepValues]] = []
        self._lr = learning_rate
        self._stop = stop_on_nonfinite

    def add(self, step: int, metrics: Any) -> None:
        """Keep the metrics of the update that produced `step` (1-based count of updates)."""
        self._on_device.append((step, metrics))

    def _fetch(self) -> list[tuple[int, StepValues]]:
        """All steps on the host; NonFiniteError for a diverged step if the config says stop."""
        for s, m in self._on_device:
            # Step outputs are replicated over devices (identical after pmean): read one.
            values = {k: float(v) for k, v in self._fetch_one(m).items()}
            bad = [name for q, name in _NONFINITE if values[f"nonfinite_{q}"]]
            if bad and self._stop:
                raise NonFiniteError(f"step {s}: non-finite {' and '.join(bad)}; the update was "
                                     "not applied and no checkpoint holds it (set "
                                     "on_nonfinite=skip to skip such steps)")
            self._host.append((s, values))
        self._on_device = []
        return self._host

    def pending(self) -> list[list[Any]]:
        """The window so far as JSON-able `[step, {name: value}]` pairs (for a checkpoint)."""
        return [[s, {k: _to_json(v) for k, v in m.items()}] for s, m in self._fetch()]

    def restore(self, pending: Sequence[Sequence[Any]]) -> None:
        """Start from a checkpoint's `pending()` window."""
        self._on_device = []
        self._host = [(int(s), {k: float(v) for k, v in m.items()}) for s, m in pending]

    def flush(self) -> dict[str, float]:
        """Mean metrics over the window, then empty it; NonFiniteError if a step diverged."""
        fetched, self._host = self._fetch(), []
        totals: dict[str, float] = {}
        for _, m in fetched:
            for k, v in m.items():
                if k.endswith(("_sum", "_count")):
                    totals[k] = totals.get(k, 0.0) + v
        out = sums_to_metrics(totals)
        norms = [m["grad_norm"] for _, m in fetched]
        out["grad_norm"] = float(np.mean(norms))
        out["grad_norm_max"] = float(np.max(norms))
        out["skipped"] = float(sum(max(m["nonfinite_loss"], m["nonfinite_grad"])
                                   for _, m in fetched))
        out["learning_rate"] = float(self._lr(fetched[-1][0] - 1))
        return out
