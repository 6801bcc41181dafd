"""Task-aware losses and metrics, chosen from the TaskSpec.

Each function returns `(loss_sum, metrics)` where every metric is a pair `(sum, count)`. Sums and
counts, not means, so that evaluation aggregates exactly over batches and devices, and the train
step can form the global mean loss whatever the split across devices.

Batch keys used (see cnn_rnn.data.base): targets, weights, and for sequence tasks the optional
target_weights [B, T] (which steps the loss counts) and accuracy_weights [B, T] (which steps
accuracy counts, e.g. only the recalled symbols of the copy task).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from cnn_rnn.data.base import TaskSpec

Metrics = dict[str, tuple[jax.Array, jax.Array]]


def _weights(batch: dict[str, jax.Array], n: int) -> jax.Array:
    w = batch.get("weights")
    return jnp.ones((n,), jnp.float32) if w is None else w.astype(jnp.float32)


def classification(outputs: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Softmax cross-entropy and accuracy for logits [B, C] and integer targets [B]."""
    w = _weights(batch, outputs.shape[0])
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32),
                                                         batch["targets"])
    correct = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
    count = w.sum()
    loss_sum = (ce * w).sum()
    return loss_sum, {"loss": (loss_sum, count), "accuracy": ((correct * w).sum(), count)}


def regression(outputs: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Mean squared error for predictions and targets [B, K] (averaged over K)."""
    w = _weights(batch, outputs.shape[0])
    err = jnp.mean((outputs.astype(jnp.float32) - batch["targets"]) ** 2, axis=-1)
    count = w.sum()
    loss_sum = (err * w).sum()
    return loss_sum, {"loss": (loss_sum, count)}


def sequence_classification(outputs: jax.Array,
                            batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Per-step cross-entropy for logits [B, T, C] and targets [B, T]; also bits per step."""
    b, t = batch["targets"].shape
    w = _weights(batch, b)[:, None]
    tw = batch.get("target_weights")
    lw = w * (jnp.ones((b, t), jnp.float32) if tw is None else tw.astype(jnp.float32))
    aw_raw = batch.get("accuracy_weights")
    aw = lw if aw_raw is None else w * aw_raw.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32),
                                                         batch["targets"])
    correct = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
    loss_sum = (ce * lw).sum()
    count = lw.sum()
    return loss_sum, {
        "loss": (loss_sum, count),
        "bits_per_step": (loss_sum / math.log(2.0), count),
        "accuracy": ((correct * aw).sum(), aw.sum()),
    }


LOSSES = {
    "classification": classification,
    "regression": regression,
    "sequence_classification": sequence_classification,
}


def loss_and_metrics(spec: TaskSpec, outputs: jax.Array,
                     batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """The loss sum and metric (sum, count) pairs for `spec.kind`."""
    return LOSSES[spec.kind](outputs, batch)


def finalize(metrics: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Turn accumulated (sum, count) pairs into means."""
    return {k: float(s) / max(float(c), 1e-12) for k, (s, c) in metrics.items()}
