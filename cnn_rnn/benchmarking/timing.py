"""Timing, compile-time and memory measurements of jitted steps.

Timing on a shared machine is noisy, so rows that are compared with each other are measured
together: `interleaved_times` runs one step of every row per round, round after round, and the
median over rounds is reported. A slow period then hits all rows alike and cancels in their
ratios.

Memory is read from the compiled executable (`Compiled.memory_analysis()`): arguments + outputs +
temporaries - aliased (donated) bytes, i.e. what the step needs at its peak according to XLA's
buffer assignment. It is static, per executable and the same on every backend, so rows are
comparable; the allocator's own high-water mark (`device.memory_stats()["peak_bytes_in_use"]`,
GPU/TPU only) cannot be reset between rows and covers the whole process, so it is reported
separately by `device_peak_bytes`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

PEAK_SOURCE = "memory_analysis: argument + output + temp - alias bytes"


def compile_timed(fn: Callable[..., Any], *args: Any,
                  donate_argnums: tuple[int, ...] = ()) -> tuple[Any, float]:
    """Lower and compile `jax.jit(fn)` for `args`; return the executable and the seconds taken.

    The time covers tracing, lowering and XLA compilation (`.lower(...).compile()`), i.e. what a
    user waits for on the first call, without running the step.
    """
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    return compiled, time.perf_counter() - start


def peak_bytes(compiled: Any) -> int | None:
    """Return the bytes a compiled step needs at its peak (see PEAK_SOURCE), or None if unknown."""
    try:
        m = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def device_peak_bytes() -> int | None:
    """Return the allocator's process-wide high-water mark on device 0, or None (e.g. on CPU)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def interleaved_times(steps: Sequence[Callable[[], None]], *, repeats: int, warmup: int = 1,
                      budget_s: float | None = None, min_repeats: int = 3) -> list[list[float]]:
    """Time each blocking callable `repeats` times, alternating between them round by round.

    Args:
      steps: callables that run one step and return once it has finished.
      repeats: timed rounds wanted.
      warmup: untimed calls of each step first (after compilation, the first runs are slower).
      budget_s: stop after the round in which the total timed seconds exceed this, provided
        `min_repeats` rounds are done (long sequences on a CPU).
      min_repeats: rounds always run, whatever the budget.

    Returns:
      One list of seconds per step, in the order of `steps`.

    """
    for step in steps:
        for _ in range(warmup):
            step()
    times: list[list[float]] = [[] for _ in steps]
    spent = 0.0
    for rnd in range(repeats):
        for samples, step in zip(times, steps, strict=True):
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
            spent += samples[-1]
        if budget_s is not None and rnd + 1 >= min_repeats and spent > budget_s:
            break
    return times


def median_ms(samples: Sequence[float]) -> float:
    """Return the median of seconds, in milliseconds."""
    return 1e3 * statistics.median(samples)
