"""Data parallelism: the one place that knows how steps are spread over devices and processes.

Steps are written for one device's shard under a named axis (see steps.py). A backend maps them
over every device of every process and moves states, batches and metrics between host and
devices:

  pmap  (default) `jax.pmap` over each process's local devices; the axis spans all processes.
  jit   `jax.jit` of a `jax.shard_map` over a 1-D `Mesh` of all devices: the batch is sharded
        along it with a `NamedSharding`, the state replicated. The recommended path in current
        JAX, where pmap is in maintenance mode.

Both run the same per-shard step, so they compute the same update; `make_backend(name)` builds
one. Each process hands a backend only its own rows of the global batch (see
`cnn_rnn.training.distributed`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.parallel.base import AXIS, Backend, check_batch_size
from cnn_rnn.training.parallel.jit import JitBackend
from cnn_rnn.training.parallel.pmap import (
    PmapBackend,
    device_count,
    pmap_step,
    replicate,
    shard,
    unreplicate,
)

BACKENDS = {"pmap": PmapBackend, "jit": JitBackend}

__all__ = ["AXIS", "BACKENDS", "Backend", "check_backend", "check_batch_size", "device_count",
           "make_backend", "pmap_step", "replicate", "shard", "unreplicate"]


def check_backend(name: str) -> None:
    """Raise ConfigError unless `name` is a known backend."""
    if name not in BACKENDS:
        raise ConfigError("parallelism", f"{name!r} is unknown; accepted: "
                          f"{', '.join(repr(b) for b in BACKENDS)}")


def make_backend(name: str = "pmap", devices: Sequence[jax.Device] | None = None) -> Backend:
    """The data-parallel backend `name` over `devices` (default: every device of every process).

    `devices` (single process only) lets tests compare device counts.
    """
    check_backend(name)
    return BACKENDS[name](devices)
