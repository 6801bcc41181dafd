"""The host pipeline: one process's rows of the global batch, prefetch, evaluation batch size."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnn_rnn.data.pipeline import (
    GlobalBatches,
    Prefetcher,
    default_eval_batch_size,
    prefetch_batches,
)
from cnn_rnn.data.registry import build_data


@pytest.mark.parametrize("data", [{"name": "mnist1d"},
                                  {"name": "digits", "size": 16, "pixels": "permuted"},
                                  {"name": "adding", "length": 20}])
def test_rows_are_slices_of_the_global_batch(data):
    batches = GlobalBatches(build_data(data, seed=3), batch_size=12)
    for step in (0, 5):
        whole = batches.batch(step)
        parts = [batches.rows(step, a, a + 4) for a in (0, 4, 8)]
        for key, value in whole.items():
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)
    with pytest.raises(ValueError):
        batches.rows(0, 8, 13)


def test_prefetched_batches_are_the_direct_ones_in_order():
    source = build_data({"name": "mnist1d"}, seed=1)
    with prefetch_batches(source, 8, range(3, 9)) as batches:
        got = list(batches)
    assert len(got) == 6
    for step, batch in zip(range(3, 9), got, strict=True):
        for key, value in source.train_batch(step, 8).items():
            np.testing.assert_array_equal(batch[key], value)
    with prefetch_batches(source, 8, range(3, 5), rows=(2, 6)) as batches:
        for step, batch in zip(range(3, 5), batches, strict=True):
            np.testing.assert_array_equal(batch["inputs"],
                                          source.train_batch(step, 8)["inputs"][2:6])


def test_prefetch_runs_ahead_and_reports_errors_and_waits():
    produced = []
    ahead = threading.Event()

    def produce(i):
        produced.append(i)
        if i == 2:
            ahead.set()
        if i == 4:
            raise RuntimeError("bad item 4")
        return i * 10

    ticks = iter(range(1000))
    with Prefetcher(produce, range(10), depth=2, clock=lambda: float(next(ticks))) as it:
        assert ahead.wait(5)  # items 0..2 built before any was asked for
        assert [next(it), next(it), next(it), next(it)] == [0, 10, 20, 30]
        with pytest.raises(RuntimeError, match="bad item 4"):
            next(it)
    assert it.wait_seconds == 5.0  # one tick per next() call
    assert produced == [0, 1, 2, 3, 4]


def test_an_early_close_stops_the_thread():
    it = Prefetcher(lambda i: i, range(10**9), depth=1)
    assert next(it) == 0
    it.close()
    assert not it._thread.is_alive()


def test_default_eval_batch_size():
    assert default_eval_batch_size(64, (784, 1), 1) == 1024  # sMNIST: few large calls
    assert default_eval_batch_size(64, (512, 256), 1) == 64  # never below the training batch
    assert default_eval_batch_size(8, (100_000,), 1) == 41
    assert default_eval_batch_size(8, (100_000,), 8) == 40  # divides over the devices
