"""Host input pipeline: the global batch of each step, one process's rows of it, and prefetch.

The batch at step s is a pure function of (seed, s) (`DataSource.train_batch`), so it can be
built ahead of time on another thread without changing what a run computes: `Prefetcher` runs a
producer in a background thread and keeps up to `depth` results ready while the device works on
the current step. Resume stays bitwise exact because the producer is started at the resumed step.

`GlobalBatches` is the per-step view a multi-process run shares: `batch(step)` is the whole global
batch, `rows(step, start, stop)` only one process's rows of it, built without the others.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from cnn_rnn.data.base import Batch, DataSource

T = TypeVar("T")
S = TypeVar("S")
# Evaluation batches hold at most about this many input elements (16 MiB of float32 inputs),
# and at most MAX_EVAL_BATCH examples, unless the config sets eval_batch_size.
EVAL_ELEMENTS = 1 << 22
MAX_EVAL_BATCH = 1024
_DONE = object()


class GlobalBatches:
    """The training batch of every step of a source, at a fixed global batch size."""

    def __init__(self, source: DataSource, batch_size: int):
        self.source = source
        self.batch_size = batch_size

    def batch(self, step: int) -> Batch:
        """Return the global batch of `step`: a dict of numpy arrays [batch_size, ...]."""
        return self.source.train_batch(step, self.batch_size)

    def rows(self, step: int, start: int, stop: int) -> Batch:
        """Return rows [start, stop) of the global batch of `step` (equal to batch(step)[a:b])."""
        if not 0 <= start <= stop <= self.batch_size:
            raise ValueError(f"rows [{start}, {stop}) outside a batch of {self.batch_size}")
        return self.source.train_rows(step, self.batch_size, start, stop)


class Prefetcher(Generic[S, T]):
    """Iterate `produce(item)` for each of `items`, computed ahead in a background thread.

    Results come in order; an exception raised by `produce` (or by `items`) is raised by `next`.
    `wait_seconds` accumulates the time the consumer spent blocked waiting for a result, the
    input-bound part of a training loop. Use as a context manager, or call `close()`, so that
    the thread stops when the consumer stops early.
    """

    def __init__(self, produce: Callable[[S], T], items: Iterable[S], depth: int = 2,
                 clock: Callable[[], float] = time.perf_counter):
        self._queue: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._clock = clock
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(produce, items), daemon=True,
                                        name="cnn_rnn-prefetch")
        self._thread.start()

    def _put(self, entry: tuple[Any, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[S], T], items: Iterable[S]) -> None:
        try:
            for item in items:
                if self._stop.is_set() or not self._put((produce(item), None)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._put((_DONE, e))
            return
        self._put((_DONE, None))

    def __iter__(self) -> Prefetcher[S, T]:
        return self

    def __next__(self) -> T:
        t0 = self._clock()
        value, error = self._queue.get()
        self.wait_seconds += self._clock() - t0
        if error is not None:
            self.close()
            raise error
        if value is _DONE:
            self._queue.put((_DONE, None))  # later calls stop too
            raise StopIteration
        return value

    def close(self) -> None:
        """Stop the producer thread and drop what it prepared."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher[S, T]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prefetch_batches(source: DataSource, batch_size: int, steps: Iterable[int],
                     transform: Callable[[Batch], Any] = lambda b: b, depth: int = 2,
                     rows: tuple[int, int] | None = None) -> Prefetcher[int, Any]:
    """Return `transform(batch)` for each step of `steps`, prefetched on a background thread.

    Args:
      source: the data source.
      batch_size: the global batch size.
      steps: the steps to produce, in order (e.g. range(resumed_step, total_steps)).
      transform: applied on the background thread too (e.g. splitting over local devices).
      depth: how many results to keep ready.
      rows: (start, stop) to produce only those rows of each global batch (one process's
        share in a multi-process run); None for the whole batch.
    """
    batches = GlobalBatches(source, batch_size)
    if rows is None:
        return Prefetcher(lambda step: transform(batches.batch(step)), steps, depth)
    return Prefetcher(lambda step: transform(batches.rows(step, *rows)), steps, depth)


def default_eval_batch_size(batch_size: int, input_shape: tuple[int, ...], n_devices: int,
                            limit: int = EVAL_ELEMENTS) -> int:
    """Return an evaluation batch size: large for small inputs, never below `batch_size`.

    Evaluation needs no gradients, so it can take bigger batches than training; fewer, larger
    jitted calls are what makes evaluating 10,000 long sequences fast. The result is a multiple
    of `n_devices` and holds at most about `limit` input elements (or `batch_size` examples).
    """
    fit = min(MAX_EVAL_BATCH, limit // max(1, math.prod(input_shape)))
    return max(batch_size, fit // n_devices * n_devices)
