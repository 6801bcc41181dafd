"""Metric records: JSONL in the workdir (what reports and tests read) plus TensorBoard events."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

METRICS_FILE = "metrics.jsonl"

log = logging.getLogger(__name__)


def _read_rows(path: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of a metrics file and whether its last line was torn (and left out).

    Only the last line can be half-written (the file is append-only, one flushed line per
    record), e.g. by a full disk or a power loss; an unparsable line before it is corruption.
    """
    if not os.path.exists(path):
        return [], False
    with open(path) as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    rows: list[dict[str, Any]] = []
    for i, (n, line) in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                return rows, True
            raise ValueError(f"{path}: line {n} is not a JSON record ({e.msg}); only the last "
                             "line may be torn by a crash") from None
    return rows, False


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
    """All records of `<workdir>/metrics.jsonl`, optionally only one split.

    A torn last line (a crash mid-write) is left out.
    """
    rows, _ = _read_rows(os.path.join(workdir, METRICS_FILE))
    return [r for r in rows if split is None or r.get("split") == split]


def _clean(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Appends `{"step", "split", **values}` lines to metrics.jsonl and TensorBoard scalars."""

    def __init__(self, workdir: str, resume_step: int = 0):
        self.path = os.path.join(workdir, METRICS_FILE)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 - held open for the run
        from tensorboardX import SummaryWriter

        tb_dir = os.path.join(workdir, "tensorboard")
        # Events after the checkpoint are repeated by this run: TensorBoard hides the old ones
        # from purge_step on. Records at resume_step itself were written before the checkpoint.
        resumed = os.path.isdir(tb_dir) and bool(os.listdir(tb_dir))
        self._tb = SummaryWriter(tb_dir, purge_step=resume_step + 1 if resumed else None)

    def _truncate_after(self, step: int) -> None:
        # A resumed run repeats the steps after its checkpoint; drop their old records so the
        # file matches an uninterrupted run line for line. Written to a temp file then renamed.
        if not os.path.exists(self.path):
            return
        rows, torn = _read_rows(self.path)
        if torn:
            log.warning("%s: dropped a torn last line (a crash mid-write)", self.path)
        rows = [r for r in rows if r["step"] <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        """Record one set of values for `split` at `step`."""
        row = {"step": int(step), "split": split, **{k: _clean(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for k, v in values.items():
            # Non-finite values stay in the JSONL (as "nan"/"inf"); TensorBoard would warn on
            # every one of them, flooding the console of an exploding run.
            if math.isfinite(float(v)):
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        """Flush and close both sinks."""
        self._file.close()
        self._tb.close()


class NullWriter:
    """A MetricWriter that writes nothing: what processes other than the primary hold."""

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        """Drop the values (process 0 records them)."""

    def close(self) -> None:
        """Nothing to close."""
