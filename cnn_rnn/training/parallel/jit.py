"""The jit backend: `jax.jit` of a `jax.shard_map` over a 1-D device `Mesh`.

The global batch is one array sharded along the mesh axis (`NamedSharding(mesh, P(AXIS))`),
assembled from each process's rows without any copy between processes; the state is replicated
(`P()`). Inside, the same per-shard step as pmap runs, so both backends compute the same update.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnn_rnn.training.parallel.base import AXIS, Backend, Step


class JitBackend(Backend):
    """Data parallelism with `jax.jit` + `NamedSharding` (the recommended path in new JAX)."""

    name = "jit"

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        super().__init__(devices)
        # Grouped by process, so that each process's rows of the batch are one contiguous block.
        ordered = sorted(self.devices, key=lambda d: (d.process_index, d.id))
        self.mesh = Mesh(np.array(ordered), (AXIS,))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P(AXIS))

    def put_state(self, state: Any) -> Any:
        """Replicate a host pytree (the same on every process) over the mesh."""
        def put(x: Any) -> jax.Array:
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])

        return jax.tree_util.tree_map(put, state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows as its part of one global array sharded over the mesh."""
        return {k: jax.make_array_from_process_local_data(self.sharded, v)
                for k, v in batch.items()}

    def compile(self, step_fn: Callable[..., Any], donate_state: bool = False,
                **static: Any) -> Step:
        """Jit a shard_map of the step: batch split over the mesh axis, everything else whole."""
        fn = functools.partial(step_fn, axis_name=AXIS, **static)
        # Outputs are replicated: gradients are pmean-ed and metrics psum-med inside the step.
        mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                               check_vma=False)
        jitted = jax.jit(mapped, donate_argnums=(0,) if donate_state else ())
        return lambda state, batch: jitted(state, self.put_batch(batch))

    def _one_replica(self, x: jax.Array) -> jax.Array:
        return x.addressable_shards[0].data
