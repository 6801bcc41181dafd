"""Pure train and eval steps, written for one device's shard of the batch.

They take the name of the device axis they run under (`axis_name`) so that one code path serves a
single device and many: gradients are averaged with `jax.lax.pmean` over that axis, metric sums
with `jax.lax.psum`. The loss on each device is scaled so that the averaged gradient equals the
gradient of the global mean loss, however the examples (or counted steps) split across devices.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnn_rnn.task import TaskSpec
from cnn_rnn.training.example_dropout import keyed_by_example
from cnn_rnn.training.losses import Metrics, loss_and_metrics
from cnn_rnn.training.state import TrainState

Batch = dict[str, jax.Array]


def model_inputs(spec: TaskSpec, batch: Batch, train: bool) -> dict[str, jax.Array]:
    """Keyword inputs of the model beyond `inputs` and `mask`.

    A seq2seq model is trained with teacher forcing (it reads the target sequence, shifted) and
    evaluated by greedy decoding (it reads only its own predictions).
    """
    return {"targets": batch["targets"]} if (spec.kind == "seq2seq" and train) else {}


def _apply(model: nn.Module, state: TrainState, params: Any, batch: Batch, train: bool,
           rng: jax.Array | None, spec: TaskSpec) -> tuple[jax.Array, Any]:
    mutable = ["batch_stats"] if (train and state.batch_stats) else False
    out = model.apply(state.variables(params), batch["inputs"], train=train,
                      mask=batch.get("mask"), rngs={"dropout": rng} if rng is not None else None,
                      mutable=mutable, **model_inputs(spec, batch, train))
    return out if mutable else (out, {})


def global_example_ids(batch: Batch, axis_name: str) -> jax.Array:
    """Each row's index in the step's global batch: `batch["example_id"]`, else from the shard.

    Without the field, shards are taken to be consecutive blocks in device order (one process).
    """
    if "example_id" in batch:
        return batch["example_id"]
    rows = batch["inputs"].shape[0]
    return jax.lax.axis_index(axis_name) * rows + jnp.arange(rows)


def train_step(state: TrainState, batch: Batch, *, model: nn.Module, spec: TaskSpec,
               axis_name: str) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on this device's shard; returns the new state and metric sums.

    A step whose loss, gradient or updated parameters are not finite leaves params, statistics
    and optimizer state unchanged (only the step counter advances) and reports
    `nonfinite_loss`/`nonfinite_grad`;
    the loop then stops or skips as the config says, so no checkpoint holds non-finite values.
    """
    # One key per step on every device; each example's dropout mask folds in its index in the
    # global batch (example_dropout.py), so the update does not depend on the device split.
    rng = jax.random.fold_in(state.rng, state.step)
    n_dev = jax.lax.psum(1, axis_name)
    example_ids = global_example_ids(batch, axis_name)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[Metrics, Any]]:
        with keyed_by_example(example_ids):
            outputs, updates = _apply(model, state, params, batch, True, rng, spec)
        loss_sum, metrics = loss_and_metrics(spec, outputs, batch)
        global_count = jax.lax.psum(jax.lax.stop_gradient(metrics["loss"][1]), axis_name)
        # pmean of (n_dev * local_sum / global_count) gradients = gradient of the global mean.
        return loss_sum * n_dev / jnp.maximum(global_count, 1e-12), (metrics, updates)

    grads, (metrics, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    grads = jax.lax.pmean(grads, axis_name)
    grad_norm = optax.global_norm(grads)
    new_state = state.apply_gradients(grads=grads)
    if updates:
        new_state = new_state.replace(batch_stats=updates["batch_stats"])

    sums = jax.lax.psum({k: s for k, (s, _) in metrics.items()}, axis_name)
    counts = jax.lax.psum({k: c for k, (_, c) in metrics.items()}, axis_name)
    loss = sums["loss"] / jnp.maximum(counts["loss"], 1e-12)
    bad_loss = ~jnp.isfinite(loss)
    # A finite gradient can still overflow the parameters (huge learning rate); count that too.
    bad_grad = ~(jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(new_state.params)))
    ok = ~(bad_loss | bad_grad)
    kept = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    kept = kept.replace(step=state.step + 1)
    out = {f"{k}_sum": v for k, v in sums.items()}
    out.update({f"{k}_count": v for k, v in counts.items()})
    out.update(grad_norm=grad_norm, nonfinite_loss=bad_loss.astype(jnp.float32),
               nonfinite_grad=bad_grad.astype(jnp.float32))
    return kept, out


def eval_step(state: TrainState, batch: Batch, *, model: nn.Module, spec: TaskSpec,
              axis_name: str) -> dict[str, jax.Array]:
    """Metric sums and counts for this shard, summed over devices."""
    outputs, _ = _apply(model, state, state.params, batch, False, None, spec)
    _, metrics = loss_and_metrics(spec, outputs, batch)
    sums = jax.lax.psum({k: s for k, (s, _) in metrics.items()}, axis_name)
    counts = jax.lax.psum({k: c for k, (_, c) in metrics.items()}, axis_name)
    out = {f"{k}_sum": v for k, v in sums.items()}
    out.update({f"{k}_count": v for k, v in counts.items()})
    return out
