"""Helpers shared by the model tests (pytest puts tests/ on sys.path, so: import model_helpers)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_rnn.models.registry import build_model
from cnn_rnn.training import parallel
from cnn_rnn.training.state import create_train_state
from cnn_rnn.training.steps import train_step

KEY = jax.random.PRNGKey(0)


def train_losses(model_cfg, spec, steps=12, batch_size=8):
    """Losses of a few adam steps on one fixed random batch, through the real train step.

    Many-to-one tasks memorise random labels; many-to-many tasks learn a per-step target (the
    sign of the current input), so either can only go down if the model really learns.
    """
    model = build_model(model_cfg, spec, axis_name=parallel.AXIS)
    state = create_train_state(model, optax.adam(1e-2), spec.input_shape, KEY)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(batch_size, *spec.input_shape)).astype(np.float32)
    if spec.kind == "regression":
        targets = rng.normal(size=(batch_size, spec.num_outputs)).astype(np.float32)
    elif spec.many_to_many:
        targets = (inputs[..., 0] > 0).astype(np.int32)
    else:
        targets = rng.integers(0, spec.num_outputs, batch_size).astype(np.int32)
    batch = {"inputs": inputs, "targets": targets}
    devices = jax.local_devices()[:1]
    step = parallel.pmap_step(train_step, devices=devices, model=model, spec=spec)
    state, batch = parallel.replicate(state, devices), parallel.shard(batch, 1)
    losses = []
    for _ in range(steps):
        state, m = step(state, batch)
        losses.append(float(m["loss_sum"][0] / m["loss_count"][0]))
    return losses


def assert_padding_changes_nothing(model, variables, x, lengths, extra, fill, atol=1e-5):
    """Assert that masked padding changes no output of a model on valid steps.

    x [B, T, ...] with mask `lengths` is compared with the same sequences right-padded to
    T + `extra` steps, every step past a sequence's length set to `fill`. Per-step outputs
    [B, T, F] are compared on valid steps only; per-sequence outputs [B, F] everywhere.
    """
    t = x.shape[1]
    lengths = jnp.asarray(lengths)
    x_long = jnp.concatenate([x, jnp.full((x.shape[0], extra, *x.shape[2:]), fill, x.dtype)],
                             axis=1)
    mask_long = jnp.arange(t + extra)[None, :] < lengths[:, None]
    x_long = jnp.where(mask_long.reshape(*mask_long.shape, *[1] * (x.ndim - 2)), x_long, fill)
    mask = mask_long[:, :t]
    short = np.asarray(model.apply(variables, x, mask=mask))
    long = np.asarray(model.apply(variables, x_long, mask=mask_long))
    if short.ndim == 3:
        valid = np.asarray(mask)
        np.testing.assert_allclose(short[valid], long[:, :t][valid], atol=atol)
    else:
        np.testing.assert_allclose(short, long, atol=atol)


def layer_reference(ref, params, x, lengths, num_layers, bidirectional):
    """Per-layer states of a stacked (bi)directional layer, each sequence run on its own.

    `ref(np, p, x)` is one direction's reference loop ([B, T, D] -> [B, T, H]) on its params p;
    `params` is the RNN layer's parameter tree. Returns the states [B, T, H*dirs] of each layer
    (zero on padded steps) and the final summary [B, H*dirs] the layer reads out.
    """
    x = np.asarray(x, np.float64)
    h = params["layer0_fwd"]["W_h"].shape[0]
    per_layer = [np.zeros((x.shape[0], x.shape[1], h * (2 if bidirectional else 1)))
                 for _ in range(num_layers)]
    finals = []
    for b, n in enumerate(lengths):
        seq = x[b:b + 1, :n]
        final = []
        for layer in range(num_layers):
            fwd = ref(np, params[f"layer{layer}_fwd"], seq)
            outs = [fwd]
            if bidirectional:
                outs.append(ref(np, params[f"layer{layer}_bwd"], seq[:, ::-1])[:, ::-1])
            seq = np.concatenate(outs, axis=-1)
            per_layer[layer][b, :n] = seq[0]
            final = [fwd[0, -1]] + ([outs[1][0, 0]] if bidirectional else [])
        finals.append(np.concatenate(final))
    return per_layer, np.stack(finals)
