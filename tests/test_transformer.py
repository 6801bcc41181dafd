"""Transformer encoder: shapes, causal and padding masks, positions, training, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import train_losses

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.transformer import Transformer, sinusoidal_positions
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.state import param_count

KEY = jax.random.PRNGKey(0)
SPEC = TaskSpec(kind="classification", num_outputs=3, input_shape=(12, 2))
PER_STEP = TaskSpec(kind="sequence_classification", num_outputs=3, input_shape=(12, 2))
TINY = dict(d_model=8, num_heads=2, num_layers=2, mlp_dim=16, dropout=0.0, max_len=32)


def model_and_vars(x, **kwargs):
    model = Transformer(3, **{**TINY, **kwargs})
    return model, jax.jit(model.init)(KEY, x)


@pytest.mark.parametrize("kwargs,shape", [
    (dict(), (2, 3)),
    (dict(positions="sinusoidal", pool="last", causal=True), (2, 3)),
    (dict(return_sequences=True), (2, 10, 3)),
])
def test_output_shape(kwargs, shape):
    x = jnp.ones((2, 10, 2))
    model, variables = model_and_vars(x, **kwargs)
    assert model.apply(variables, x).shape == shape


@pytest.mark.parametrize("causal,embed_kernel", [(True, 1), (True, 3), (False, 1)])
def test_causal_output_at_t_ignores_later_inputs(causal, embed_kernel):
    x = jax.random.normal(KEY, (2, 12, 2))
    model, variables = model_and_vars(x, causal=causal, embed_kernel=embed_kernel,
                                      return_sequences=True)
    t = 6
    changed = x.at[:, t + 1:].add(1.0)
    apply = jax.jit(model.apply)
    a, b = apply(variables, x), apply(variables, changed)
    assert not np.allclose(a[:, t + 1:], b[:, t + 1:])
    # Causal: the past is untouched. Not causal: every step sees the change.
    assert np.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6) == causal


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(pool="mean"), marks=pytest.mark.slow),  # the other two cover its paths
    pytest.param(dict(pool="last", causal=True), marks=pytest.mark.slow),  # fast-suite time
    dict(pool="mean", positions="sinusoidal", embed_kernel=3),
])
def test_padding_changes_nothing(kwargs):
    lengths = jnp.array([12, 5])
    x = jax.random.normal(KEY, (2, 12, 2))
    mask = jnp.arange(12)[None] < lengths[:, None]
    model, variables = model_and_vars(x, **kwargs)
    padded = model.apply(variables, jnp.where(mask[..., None], x, 50.0), mask=mask)
    for b, n in enumerate(lengths):
        alone = model.apply(variables, x[b:b + 1, :n])
        np.testing.assert_allclose(padded[b], alone[0], rtol=1e-5, atol=1e-5)


def test_learned_positions_reject_long_sequences():
    model, variables = model_and_vars(jnp.ones((1, 4, 2)), max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model.apply(variables, jnp.ones((1, 9, 2)))


def test_param_count_independent_of_sequence_length():
    def count(model, t):
        return param_count(jax.eval_shape(model.init, KEY, jnp.ones((1, t, 2)))["params"])

    learned = Transformer(3, **TINY)
    assert count(learned, 4) == count(learned, 32)
    # Sinusoids are fixed: the only difference is the learned [max_len, d_model] table.
    fixed = Transformer(3, **{**TINY, "positions": "sinusoidal"})
    assert count(learned, 4) - count(fixed, 4) == TINY["max_len"] * TINY["d_model"]


def test_sinusoidal_positions():
    table = sinusoidal_positions(50, 6)
    assert table.shape == (50, 6)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1], atol=1e-7)
    assert sinusoidal_positions(3, 5).shape == (3, 5)


@pytest.mark.parametrize("spec", [pytest.param(SPEC, marks=pytest.mark.slow), PER_STEP],
                         ids=["many_to_one", "many_to_many"])  # fast-suite time: docs/tests.md
def test_trains_a_few_steps(spec):
    cfg = dict(name="transformer", **{**TINY, "d_model": 16, "mlp_dim": 32, "dropout": 0.1})
    losses = train_losses(cfg, spec)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("cfg,field", [
    (dict(name="transformer", n_heads=2), "model.n_heads"),
    (dict(name="transformer", d_model=10, num_heads=4), "divisible"),
    (dict(name="transformer", positions="rotary"), "positions"),
    (dict(name="transformer", pool="max"), "pool"),
    (dict(name="transformer", num_layers=0), "num_layers"),
    (dict(name="transformer", embed_kernel=0), "embed_kernel"),
])
def test_bad_config_is_a_clear_error(cfg, field):
    with pytest.raises(ConfigError, match=field):
        build_model(cfg, SPEC)
