"""The pmap backend: `jax.pmap` over each process's local devices.

With several processes the mapped axis spans all of them, so `psum`/`pmean` inside a step are
global. States carry a leading device axis; batches are reshaped to [devices, rows, ...].
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.jax_utils
import jax
import numpy as np

from cnn_rnn.training.parallel.base import AXIS, Backend, Step


def device_count() -> int:
    """Number of local devices the steps are mapped over."""
    return jax.local_device_count()


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
    return jax.tree_util.tree_map(_first_copy, tree)


def _first_copy(x: jax.Array) -> jax.Array:
    # A shard's shape is [1, ...] or [...] depending on the device count; reshape covers both.
    return x.addressable_shards[0].data.reshape(x.shape[1:])


def pmap_step(step_fn: Callable[..., Any], donate_state: bool = False,
              devices: Sequence[jax.Device] | None = None, **static: Any) -> Callable[..., Any]:
    """Map a per-shard step `step_fn(state, batch, axis_name=..., **static)` over devices.

    `devices` defaults to all local devices; tests pass a subset to compare device counts.
    """
    fn = functools.partial(step_fn, axis_name=AXIS, **static)
    return jax.pmap(fn, axis_name=AXIS, devices=devices,
                    donate_argnums=(0,) if donate_state else ())


class PmapBackend(Backend):
    """Data parallelism with `jax.pmap` (the design card's default)."""

    name = "pmap"

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        super().__init__(devices)
        # pmap wants every participating device when a subset is given (tests); None means all.
        self._pmap_devices = None if devices is None else self.devices

    def put_state(self, state: Any) -> Any:
        """Replicate onto this process's devices (leading device axis)."""
        return replicate(state, None if self._pmap_devices is None else self.local_devices)

    def compile(self, step_fn: Callable[..., Any], donate_state: bool = False,
                **static: Any) -> Step:
        """Pmap the step; the returned function reshapes the process's rows per device."""
        mapped = pmap_step(step_fn, donate_state, self._pmap_devices, **static)
        n_local = len(self.local_devices)
        return lambda state, batch: mapped(state, shard(batch, n_local))

    def _one_replica(self, x: jax.Array) -> jax.Array:
        return _first_copy(x)
