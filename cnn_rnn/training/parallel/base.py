"""What every data-parallel backend offers the loop, and the checks they share."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from cnn_rnn.errors import ConfigError

AXIS = "batch"
# A compiled step: (device state, this process's rows of the global batch) -> device outputs.
Step = Callable[[Any, dict[str, np.ndarray]], Any]


def check_batch_size(batch_size: int, n_devices: int, field: str = "batch_size") -> None:
    """Raise ConfigError unless the global batch (config `field`) splits evenly over devices."""
    if batch_size % n_devices:
        raise ConfigError(
            field,
            f"{batch_size} does not divide over {n_devices} devices; accepted: a multiple of "
            f"{n_devices}")


class Backend(abc.ABC):
    """Maps per-shard steps over devices; moves states, batches and outputs to and from them.

    Attributes:
      name: the config value that selects it (`parallelism`).
      devices: every device the steps span, over all processes.
      local_devices: this process's share of `devices`.
    """

    name: str

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = list(jax.devices() if devices is None else devices)
        self.local_devices = [d for d in self.devices
                              if d.process_index == jax.process_index()]

    @property
    def n_devices(self) -> int:
        """Devices over all processes: the global batch splits into this many shards."""
        return len(self.devices)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ConfigError unless `batch_size` (global) splits evenly over the devices."""
        check_batch_size(batch_size, self.n_devices)

    @abc.abstractmethod
    def put_state(self, state: Any) -> Any:
        """A host pytree (identical on every process) replicated onto every device."""

    @abc.abstractmethod
    def compile(self, step_fn: Callable[..., Any], donate_state: bool = False,
                **static: Any) -> Step:
        """`step_fn(state, batch, axis_name=AXIS, **static)` mapped over the devices.

        The result takes the device state and this process's rows of the global batch (numpy)
        and returns device outputs, replicated.
        """

    @abc.abstractmethod
    def _one_replica(self, x: jax.Array) -> jax.Array:
        """This process's first copy of a replicated device array, without the device axis."""

    def fetch(self, tree: Any) -> Any:
        """A replicated device pytree as host numpy arrays (one copy; no cross-process gather)."""
        return jax.device_get(jax.tree_util.tree_map(self._one_replica, tree))

    def get_state(self, state: Any) -> Any:
        """The replicated device state as one host copy (numpy), e.g. for a checkpoint."""
        return self.fetch(state)
