"""Dropout keyed by each example's index in the global batch, so that no topology changes it.

A step's dropout key is the same on every device; each example then draws its mask from that key
folded with its index in the global batch. An example therefore gets the same mask on 1 device,
8 devices or several processes, and the trained model does not depend on how the batch was
split. Models keep using `flax.linen.Dropout`: the step applies it through
`flax.linen.intercept_methods`, so no model knows about it.

Attention-weight dropout inside `nn.MultiHeadDotProductAttention` draws one mask for a whole
shard; it gets a key folded with the shard's first example index (distinct per shard, but it
does depend on the split).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def example_masks(key: jax.Array, example_ids: jax.Array, keep: float,
                  shape: tuple[int, ...]) -> jax.Array:
    """Boolean keep-masks [len(example_ids), *shape], row i drawn from fold_in(key, ids[i])."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, example_ids)
    return jax.vmap(lambda k: jax.random.bernoulli(k, keep, shape))(keys)


def _batch_axis(module: nn.Dropout, shape: tuple[int, ...], n: int) -> int:
    # A model whose activations are time-major says so (`dropout_batch_axis`, e.g. the RNN
    # stack's [T, B, H]); otherwise the batch leads.
    axis = getattr(module.parent, "dropout_batch_axis", 0)
    if len(shape) <= axis or shape[axis] != n:
        raise ValueError(f"dropout on an array of shape {shape}: its axis {axis} is not the batch "
                         f"of {n} examples (a time-major module sets dropout_batch_axis)")
    return axis


def _dropout(module: nn.Dropout, args: tuple[Any, ...], kwargs: dict[str, Any],
             example_ids: jax.Array) -> jax.Array:
    inputs = args[0]
    deterministic = nn.merge_param("deterministic", module.deterministic,
                                   kwargs.get("deterministic", args[1] if len(args) > 1 else None))
    if module.rate == 0.0 or deterministic:
        return inputs
    if module.rate == 1.0:
        return jnp.zeros_like(inputs)
    axis = _batch_axis(module, inputs.shape, example_ids.shape[0])
    rng = kwargs.get("rng")
    rng = module.make_rng(module.rng_collection) if rng is None else rng
    keep = 1.0 - module.rate
    # One mask per example over the other axes (size 1 along flax's broadcast_dims).
    broadcast = set(module.broadcast_dims)
    shape = tuple(1 if d in broadcast else n for d, n in enumerate(inputs.shape) if d != axis)
    mask = jnp.moveaxis(example_masks(rng, example_ids, keep, shape), 0, axis)
    mask = jnp.broadcast_to(mask, inputs.shape)
    return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


@contextlib.contextmanager
def keyed_by_example(example_ids: jax.Array) -> Iterator[None]:
    """Within this context, every `nn.Dropout` call masks example i with key fold_in(k, ids[i]).

    Args:
      example_ids: int [local batch]: each row's index in the global batch of the step.
    """
    def intercept(next_fun: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  context: Any) -> Any:
        module = context.module
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if isinstance(module, nn.Dropout):
            return _dropout(module, args, kwargs, example_ids)
        if isinstance(module, nn.MultiHeadDotProductAttention) and module.dropout_rate > 0:
            deterministic = kwargs.get("deterministic")
            deterministic = module.deterministic if deterministic is None else deterministic
            if deterministic is False and kwargs.get("dropout_rng") is None:
                kwargs = dict(kwargs, dropout_rng=jax.random.fold_in(
                    module.make_rng("dropout"), example_ids[0]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(intercept):
        yield
