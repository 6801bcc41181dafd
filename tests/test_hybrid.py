"""CNN + RNN hybrid: the three input layouts, masks, errors, and a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from model_helpers import assert_padding_changes_nothing

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.hybrid import pool_mask
from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec

SMALL = {"name": "cnn_rnn_hybrid", "features": (4, 8), "hidden": 6}


def _build(shape, many=False, **kwargs):
    spec = TaskSpec("sequence_classification" if many else "classification", 3, shape)
    return build_model({**SMALL, **kwargs}, spec)


@pytest.mark.parametrize("shape,kwargs,out", [
    ((12, 2), {"cell": "lstm"}, (2, 3)),
    ((8, 10, 1), {"cell": "rnn"}, (2, 3)),
    ((4, 8, 8, 1), {"spatial_pool": "mean", "bidirectional": True}, (2, 3)),
])
def test_layouts(shape, kwargs, out):
    model = _build(shape, **kwargs)
    x = jax.random.normal(jax.random.key(0), (2, *shape))
    v = model.init(jax.random.key(1), x)
    assert model.apply(v, x).shape == out


def test_image_columns_are_time_steps():
    # return_sequences on an image gives one output per (pooled) column: W=10 -> 5 -> 3.
    model = _build((8, 10, 1), return_sequences=True)
    x = jnp.zeros((2, 8, 10, 1))
    y = model.apply(model.init(jax.random.key(0), x), x)
    assert y.shape == (2, 3, 3)
    # The RNN's input size is H' * F = 2 * 8 (flattened column).
    params = model.init(jax.random.key(0), x)["params"]
    assert params["rnn"]["layer0_fwd"]["W_x"].shape[0] == 2 * 8


def test_pool_mask():
    m = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(pool_mask(m, 2), [[1, 1, 0], [1, 1, 1]])


def test_sequence_padding_changes_nothing():
    model = _build((10, 2))
    x = jax.random.normal(jax.random.key(2), (2, 10, 2))
    assert_padding_changes_nothing(model, model.init(jax.random.key(3), x), x, [6, 10], extra=4,
                                   fill=3.0)


def test_video_frame_padding_changes_nothing():
    model = _build((3, 6, 6, 1), spatial_pool="mean", cell="gru")
    x = jax.random.normal(jax.random.key(4), (2, 3, 6, 6, 1))
    v = model.init(jax.random.key(5), x)
    assert_padding_changes_nothing(model, v, x, [2, 3], extra=2, fill=1.0)
    # Weight sharing over time: the parameter count does not depend on the number of frames.
    count = lambda t: sum(a.size for a in jax.tree.leaves(  # noqa: E731
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, t, 6, 6, 1)))))
    assert count(3) == count(30)


@pytest.mark.parametrize("kwargs,field", [({"cell": "transformer"}, "cell"),
                                          ({"spatial_pool": "max"}, "spatial_pool"),
                                          ({"kernel": 3}, "kernel"),
                                          ({"unroll": 0}, "unroll"),
                                          ({"remat": "sometimes"}, "remat"),
                                          ({"remat_segment": 0}, "remat_segment"),
                                          ({"dropout": "0.1"}, "dropout"),
                                          ({"impl": "cudnn", "cell": "gru"}, "cell='lstm'")])
def test_bad_config_gives_clear_error(kwargs, field):
    with pytest.raises(ConfigError, match=field) as e:
        _build((10, 2), **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("remat", ["auto", "step", "segments", True])
def test_remat_takes_the_recurrent_models_values_and_changes_nothing(remat):
    x = jax.random.normal(jax.random.key(10), (2, 12, 2))
    plain = _build((12, 2), cell="lstm")  # remat="none" by default
    v = plain.init(jax.random.key(11), x)
    loss = lambda m, p: jnp.sum(m.apply({**v, "params": p}, x) ** 2)  # noqa: E731
    other = _build((12, 2), cell="lstm", remat=remat, remat_segment=2)
    assert plain.remat == "none" and other.remat == remat
    np.testing.assert_allclose(other.apply(v, x), plain.apply(v, x), atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 jax.grad(loss, argnums=1)(other, v["params"]),
                 jax.grad(loss, argnums=1)(plain, v["params"]))


def test_many_to_many_needs_pool_1():
    model = _build((10, 2), many=True)
    with pytest.raises(ValueError, match="pool"):
        model.init(jax.random.key(0), jnp.zeros((1, 10, 2)))
    model = _build((10, 2), many=True, pool=1)
    x = jnp.zeros((1, 10, 2))
    assert model.apply(model.init(jax.random.key(0), x), x).shape == (1, 10, 3)


def test_hybrid_trains():
    model = _build((16, 1), cell="gru")
    x = jax.random.normal(jax.random.key(6), (32, 16, 1))
    y = (x[:, :8, 0].sum(axis=1) > x[:, 8:, 0].sum(axis=1)).astype(jnp.int32)
    v = model.init(jax.random.key(7), x)
    params, stats = v["params"], v["batch_stats"]
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(p, s, o):
        def loss_fn(q):
            logits, new = model.apply({"params": q, "batch_stats": s}, x, train=True,
                                      mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        u, o = tx.update(g, o)
        return optax.apply_updates(p, u), new["batch_stats"], o, loss

    losses = []
    for _ in range(30):
        params, stats, opt, loss = step(params, stats, opt)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_hidden_states_and_perturbation_hook():
    model = _build((12, 2), num_layers=2)
    x = jax.random.normal(jax.random.key(8), (2, 12, 2))
    v = model.init(jax.random.key(9), x)
    states = model.apply(v, x, method="hidden_states")
    assert [s.shape for s in states] == [(2, 3, 6)] * 2  # 12 -> 6 -> 3 steps after two pools
    zeros = [jnp.zeros_like(s) for s in states]
    np.testing.assert_allclose(model.apply(v, x, perturbations=zeros), model.apply(v, x),
                               atol=1e-7)
    g = jax.grad(lambda ps: jnp.sum(model.apply(v, x, perturbations=ps) ** 2))(zeros)
    assert all(np.any(np.asarray(a) != 0) for a in g)
