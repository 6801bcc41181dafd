"""Metric records: JSONL in the workdir (what reports and tests read) plus TensorBoard events."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
    """All records of `<workdir>/metrics.jsonl`, optionally only one split."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def _clean(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Appends `{"step", "split", **values}` lines to metrics.jsonl and TensorBoard scalars."""

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
        self.path = os.path.join(workdir, METRICS_FILE)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 - held open for the run
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        # A resumed run repeats the steps after its checkpoint; drop their old records so the
        # file matches an uninterrupted run line for line. Written to a temp file then renamed.
        if not os.path.exists(self.path):
            return
        rows = [r for r in read_metrics(os.path.dirname(self.path)) if r["step"] <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        """Record one set of values for `split` at `step`."""
        row = {"step": int(step), "split": split, **{k: _clean(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                # Non-finite values stay in the JSONL (as "nan"/"inf"); TensorBoard would warn on
                # every one of them, flooding the console of an exploding run.
                if math.isfinite(float(v)):
                    self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def write_many(self, rows: Iterable[tuple[int, str, Mapping[str, Any]]]) -> None:
        """Record several (step, split, values) entries."""
        for step, split, values in rows:
            self.write(step, split, values)

    def close(self) -> None:
        """Flush and close both sinks."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()
