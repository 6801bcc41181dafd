"""Metric records: JSONL in the workdir (what reports and tests read) plus TensorBoard events.

Both go through `cnn_rnn.paths`, so a workdir on a bucket gets them too. An object store cannot
append: there the JSONL object is rewritten whole with each record (a few KB), and TensorBoard's
event file is uploaded whole on each flush (`BucketEvents`).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from cnn_rnn import paths

METRICS_FILE = "metrics.jsonl"

log = logging.getLogger(__name__)


def _read_rows(path: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of a metrics file and whether its last line was torn (and left out).

    Only the last line can be half-written (the file is append-only, one flushed line per
    record), e.g. by a full disk or a power loss; an unparsable line before it is corruption.
    """
    if not paths.exists(path):
        return [], False
    text = paths.read_text(path)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
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
    rows, _ = _read_rows(paths.join(workdir, METRICS_FILE))
    return [r for r in rows if split is None or r.get("split") == split]


def _clean(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Appends `{"step", "split", **values}` lines to metrics.jsonl and TensorBoard scalars."""

    def __init__(self, workdir: str, resume_step: int = 0):
        self.path = paths.join(workdir, METRICS_FILE)
        self._lines = self._truncate_after(resume_step)
        # A bucket object cannot be appended to: it is rewritten from _lines on each record.
        self._file = None if paths.is_object_store(workdir) else open(  # noqa: SIM115 - held
            self.path, "a")
        from tensorboardX import SummaryWriter

        register_bucket_events()
        tb_dir = paths.join(workdir, "tensorboard")
        # Events after the checkpoint are repeated by this run: TensorBoard hides the old ones
        # from purge_step on. Records at resume_step itself were written before the checkpoint.
        resumed = bool(paths.listdir(tb_dir))
        self._tb = SummaryWriter(tb_dir, purge_step=resume_step + 1 if resumed else None)

    def _truncate_after(self, step: int) -> list[str]:
        # A resumed run repeats the steps after its checkpoint; drop their old records so the
        # file matches an uninterrupted run line for line (written whole, then replaced).
        if not paths.exists(self.path):
            return []
        rows, torn = _read_rows(self.path)
        if torn:
            log.warning("%s: dropped a torn last line (a crash mid-write)", self.path)
        lines = [json.dumps(r) + "\n" for r in rows if r["step"] <= step]
        paths.write_text_atomic(self.path, "".join(lines))
        return lines

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        """Record one set of values for `split` at `step`."""
        row = {"step": int(step), "split": split, **{k: _clean(v) for k, v in values.items()}}
        line = json.dumps(row) + "\n"
        if self._file is None:
            self._lines.append(line)
            paths.write_text_atomic(self.path, "".join(self._lines))
        else:
            self._file.write(line)
            self._file.flush()
        for k, v in values.items():
            # Non-finite values stay in the JSONL (as "nan"/"inf"); TensorBoard would warn on
            # every one of them, flooding the console of an exploding run.
            if math.isfinite(float(v)):
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        """Flush and close both sinks."""
        if self._file is not None:
            self._file.close()
        self._tb.close()


class BucketEvents:
    """A TensorBoard event file on a bucket: events gathered in memory, uploaded whole on flush.

    tensorboardX's own gs:// writer needs google-cloud-storage; this one goes through
    `cnn_rnn.paths` (etils.epath) like every other file of a run, for any object store.
    """

    def __init__(self, path: str):
        self.path, self._buffer = path, io.BytesIO()

    def write(self, data: bytes) -> None:
        """Add bytes to the file (uploaded at the next flush)."""
        self._buffer.write(data)

    def flush(self) -> None:
        """Upload the whole file."""
        paths.as_path(self.path).write_bytes(self._buffer.getvalue())

    def close(self) -> None:
        """Upload the whole file one last time."""
        self.flush()


class _BucketEventsFactory:
    def open(self, path: str) -> BucketEvents:
        return BucketEvents(path)

    def directory_check(self, path: str) -> None:
        paths.makedirs(path)


def register_bucket_events() -> None:
    """Route tensorboardX's event files on object stores through BucketEvents."""
    from tensorboardX import record_writer

    for prefix in paths.OBJECT_STORES:
        record_writer.register_writer_factory(prefix.split(":")[0], _BucketEventsFactory())


class NullWriter:
    """A MetricWriter that writes nothing: what processes other than the primary hold."""

    def write(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        """Drop the values (process 0 records them)."""

    def close(self) -> None:
        """Nothing to close."""
