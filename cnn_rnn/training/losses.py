"""Task-aware losses and metrics, chosen from the TaskSpec.

Each function returns `(loss_sum, metrics)` where every metric is a pair `(sum, count)`. Sums and
counts, not means, so that evaluation aggregates exactly over batches and devices, and the train
step can form the global mean loss whatever the split across devices.

Batch keys used (see cnn_rnn.data.base): targets, weights, and for sequence tasks the optional
target_weights [B, T] (which steps the loss counts) and accuracy_weights [B, T] (which steps
accuracy counts, e.g. only the recalled symbols of the copy task). Regression batches may carry
target_scale [B, K], which adds MAE and both errors in the data's original units.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from cnn_rnn.task import TaskSpec

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


def _squared_errors(outputs: jax.Array, batch: dict[str, jax.Array]
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-output squared errors [..., K]; with target_scale, also |error| and original units."""
    diff = outputs.astype(jnp.float32) - batch["targets"]
    extra = {}
    scale = batch.get("target_scale")
    if scale is not None:
        scale = scale.astype(jnp.float32).reshape(
            scale.shape[:1] + (1,) * (diff.ndim - 2) + scale.shape[-1:])
        extra = {"mae": jnp.abs(diff), "mse_original": (diff * scale) ** 2,
                 "mae_original": jnp.abs(diff * scale)}
    return diff**2, extra


def _regression_metrics(err: jax.Array, extra: dict[str, jax.Array], lw: jax.Array
                        ) -> tuple[jax.Array, Metrics]:
    """Weighted sums of per-position errors averaged over outputs; lw weighs positions."""
    count = lw.sum()
    loss_sum = (jnp.mean(err, axis=-1) * lw).sum()
    metrics = {"loss": (loss_sum, count)}
    metrics.update({k: ((jnp.mean(v, axis=-1) * lw).sum(), count) for k, v in extra.items()})
    return loss_sum, metrics


def regression(outputs: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Mean squared error for predictions and targets [B, K] (averaged over K)."""
    err, extra = _squared_errors(outputs, batch)
    return _regression_metrics(err, extra, _weights(batch, outputs.shape[0]))


def sequence_regression(outputs: jax.Array,
                        batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Mean squared error per step for outputs and targets [B, T, K], over counted steps."""
    b, t = outputs.shape[:2]
    tw = batch.get("target_weights")
    lw = _weights(batch, b)[:, None] * (jnp.ones((b, t), jnp.float32) if tw is None
                                        else tw.astype(jnp.float32))
    err, extra = _squared_errors(outputs, batch)
    return _regression_metrics(err, extra, lw)


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


def seq2seq(outputs: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """Per-token cross-entropy and accuracy of decoder logits [B, T, C], plus exact match.

    exact_match: the fraction of (real) examples whose every counted output token is right.
    """
    loss_sum, metrics = sequence_classification(outputs, batch)
    b, t = batch["targets"].shape
    tw = batch.get("target_weights")
    counted = jnp.ones((b, t), bool) if tw is None else tw > 0
    right = (jnp.argmax(outputs, -1) == batch["targets"]) | ~counted
    w = _weights(batch, b)
    metrics["exact_match"] = ((jnp.all(right, axis=1) * w).sum(), w.sum())
    return loss_sum, metrics


LOSSES = {
    "classification": classification,
    "regression": regression,
    "sequence_classification": sequence_classification,
    "sequence_regression": sequence_regression,
    "seq2seq": seq2seq,
}


def loss_and_metrics(spec: TaskSpec, outputs: jax.Array,
                     batch: dict[str, jax.Array]) -> tuple[jax.Array, Metrics]:
    """The loss sum and metric (sum, count) pairs for `spec.kind`."""
    return LOSSES[spec.kind](outputs, batch)


def finalize(metrics: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Turn accumulated (sum, count) pairs into means."""
    return {k: float(s) / max(float(c), 1e-12) for k, (s, c) in metrics.items()}
