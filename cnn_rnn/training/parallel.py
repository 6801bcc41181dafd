"""Data parallelism over all local devices with `jax.pmap` — the one place that knows about it.

Steps are written for one device's shard under a named axis (see steps.py); this module maps them
over devices, replicates the state and splits batches. Moving to `jax.shard_map` later means
changing this file only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.jax_utils
import jax
import numpy as np

from cnn_rnn.errors import ConfigError

AXIS = "batch"


def device_count() -> int:
    """Number of local devices the steps are mapped over."""
    return jax.local_device_count()


def check_batch_size(batch_size: int, n_devices: int, field: str = "batch_size") -> None:
    """Raise ConfigError unless the global batch (config `field`) splits evenly over devices."""
    if batch_size % n_devices:
        raise ConfigError(
            field,
            f"{batch_size} does not divide over {n_devices} devices; accepted: a multiple of "
            f"{n_devices}")


def shard(batch: dict[str, np.ndarray], n_devices: int) -> dict[str, np.ndarray]:
    """Reshape each leading batch axis [B, ...] to [n_devices, B / n_devices, ...]."""
    return {k: v.reshape(n_devices, v.shape[0] // n_devices, *v.shape[1:])
            for k, v in batch.items()}


def replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
    """Copy a pytree onto every local device, or onto `devices` (leading device axis)."""
    stacked = flax.jax_utils.replicate(tree, devices=devices)
    # Passing through a pmapped identity gives the arrays the sharding pmap outputs carry, so the
    # train step compiles once instead of again on its second call.
    return jax.pmap(lambda x: x, axis_name=AXIS, devices=devices)(stacked)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated pytree (no cross-device gather)."""
    # A shard's shape is [1, ...] or [...] depending on the device count; reshape covers both.
    return jax.tree_util.tree_map(
        lambda x: x.addressable_shards[0].data.reshape(x.shape[1:]), tree)


def pmap_step(step_fn: Callable[..., Any], donate_state: bool = False,
              devices: Sequence[jax.Device] | None = None, **static: Any) -> Callable[..., Any]:
    """Map a per-shard step `step_fn(state, batch, axis_name=..., **static)` over devices.

    `devices` defaults to all local devices; tests pass a subset to compare device counts.
    """
    fn = functools.partial(step_fn, axis_name=AXIS, **static)
    return jax.pmap(fn, axis_name=AXIS, devices=devices,
                    donate_argnums=(0,) if donate_state else ())
