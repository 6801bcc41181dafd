"""The train state: everything a step reads and writes, in one pytree.

Parameters, BatchNorm statistics, optimizer state, the step counter and the PRNG key travel
together, so a checkpoint of this one object is enough to resume a run exactly.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state

from cnn_rnn.errors import ConfigError


class TrainState(train_state.TrainState):
    """flax's TrainState plus BatchNorm statistics and the dropout key."""

    batch_stats: Any = struct.field(default_factory=dict)
    rng: jax.Array = struct.field(default_factory=lambda: jax.random.PRNGKey(0))

    def variables(self, params: Any | None = None) -> dict[str, Any]:
        """The linen variables dict for `apply`, optionally with other params."""
        v = {"params": self.params if params is None else params}
        if self.batch_stats:
            v["batch_stats"] = self.batch_stats
        return v


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       input_shape: tuple[int, ...], key: jax.Array) -> TrainState:
    """Initialise the model on a one-example dummy input and wrap it in a TrainState.

    Args:
      model: the linen module (called as model.apply(vars, x, train=..., mask=...)).
      tx: the optax transformation.
      input_shape: one example's shape, without the batch axis.
      key: PRNG key; split into init and training streams.
    """
    init_key, dropout_key, train_key = jax.random.split(key, 3)
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    # Jitted: eager init compiles every initialiser op separately (seconds for a deep model).
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init({"params": init_key, "dropout": dropout_key}, dummy)
    return TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=tx,
        batch_stats=variables.get("batch_stats", {}), rng=train_key)


def param_count(params: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def _memory_bytes() -> int | None:
    """Memory the train state must fit in: the first device's limit, else the host's RAM."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(model: nn.Module, tx: optax.GradientTransformation,
                         input_shape: tuple[int, ...], key: jax.Array, name: str) -> None:
    """Raise ConfigError("model") if the train state alone would not fit in memory.

    Shapes only (`jax.eval_shape`): a width typed with a few zeros too many is refused in
    milliseconds instead of exhausting the machine's memory.
    """
    abstract = jax.eval_shape(functools.partial(create_train_state, model, tx, input_shape), key)
    need = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree_util.tree_leaves(abstract))
    limit = _memory_bytes()
    if limit is not None and need > limit:
        raise ConfigError("model", f"{name!r}: its parameters and optimizer state need "
                          f"{need / 2**30:,.1f} GiB, more than the {limit / 2**30:,.1f} GiB of "
                          "memory here; accepted: a smaller model")
