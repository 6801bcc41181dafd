"""TCN: shapes, causality, receptive field, masks, weight sharing over time, training, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import train_losses

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.readout import last_valid_step, masked_mean
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.tcn import TCN, receptive_field
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.state import param_count

KEY = jax.random.PRNGKey(0)
SPEC = TaskSpec(kind="classification", num_outputs=3, input_shape=(24, 2))
PER_STEP = TaskSpec(kind="sequence_classification", num_outputs=3, input_shape=(24, 2))


def init(model, x):
    return jax.jit(model.init)(KEY, x)


def test_receptive_field_formula():
    assert receptive_field(2, 1) == 3
    assert receptive_field(3, 4) == 1 + 2 * 2 * 15
    assert TCN(1, levels=3, kernel_size=5).receptive_field == receptive_field(5, 3) == 57
    assert TCN(1, channels=(4, 8), kernel_size=3).receptive_field == receptive_field(3, 2)


@pytest.mark.parametrize("return_sequences,shape", [(False, (3, 5)), (True, (3, 20, 5))])
def test_output_shape(return_sequences, shape):
    model = TCN(5, channels=(4, 6), return_sequences=return_sequences)
    x = jnp.ones((3, 20, 2))
    assert jax.jit(model.apply)(init(model, x), x).shape == shape


@pytest.mark.parametrize("weight_norm", [True, False])
def test_causal_output_at_t_ignores_later_inputs(weight_norm):
    model = TCN(2, levels=3, hidden=4, kernel_size=3, weight_norm=weight_norm,
                return_sequences=True)
    x = jax.random.normal(KEY, (2, 30, 2))
    variables = init(model, x)
    t = 17
    changed = x.at[:, t + 1:].set(jax.random.normal(jax.random.PRNGKey(1), (2, 30 - t - 1, 2)))
    apply = jax.jit(model.apply)
    a, b = apply(variables, x), apply(variables, changed)
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("kernel_size,levels", [(2, 3), (3, 2)])
def test_receptive_field_is_exact(kernel_size, levels):
    # d y_T / d x_s is nonzero exactly for the last R steps (summed over a batch, so that a
    # dead ReLU in one example cannot hide a path).
    model = TCN(2, levels=levels, hidden=8, kernel_size=kernel_size)
    x = jax.random.normal(KEY, (8, 40, 1))
    variables = init(model, x)
    grad = jax.jit(jax.grad(lambda x: model.apply(variables, x).sum()))(x)
    reached = np.nonzero(np.abs(grad).sum(axis=(0, 2)) > 0)[0]
    r = receptive_field(kernel_size, levels)
    np.testing.assert_array_equal(reached, np.arange(40 - r, 40))


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_right_padding_changes_nothing():
    model = TCN(3, channels=(4, 4))
    lengths = jnp.array([16, 9, 1])
    x = jax.random.normal(KEY, (3, 16, 2))
    mask = jnp.arange(16)[None] < lengths[:, None]
    variables = init(model, x)
    padded = model.apply(variables, jnp.where(mask[..., None], x, 7.0), mask=mask)
    for b, n in enumerate(lengths):
        alone = model.apply(variables, x[b:b + 1, :n])
        np.testing.assert_allclose(padded[b], alone[0], rtol=1e-5, atol=1e-5)


def test_readout_helpers():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    mask = jnp.array([[True, True, False], [True, True, True]])
    np.testing.assert_array_equal(last_valid_step(x, mask), [[2, 3], [10, 11]])
    np.testing.assert_array_equal(last_valid_step(x, None), [[4, 5], [10, 11]])
    np.testing.assert_allclose(masked_mean(x, mask), [[1, 2], [8, 9]])


def test_param_count_independent_of_sequence_length():
    model = TCN(3, levels=3, hidden=8)
    counts = {t: param_count(jax.eval_shape(model.init, KEY, jnp.zeros((1, t, 2)))["params"])
              for t in (10, 100, 1000)}
    assert len(set(counts.values())) == 1, counts


def test_weight_norm_adds_one_scale_per_output_channel():
    def count(model):
        return param_count(jax.eval_shape(model.init, KEY, jnp.ones((1, 8, 2)))["params"])

    extra = count(TCN(3, channels=(4, 6))) - count(TCN(3, channels=(4, 6), weight_norm=False))
    assert extra == 2 * 4 + 2 * 6


def test_dropout_needs_rng_only_in_training():
    model = TCN(3, channels=(4,), dropout=0.5)
    x = jnp.ones((2, 8, 2))
    variables = init(model, x)
    a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))


@pytest.mark.parametrize("spec", [pytest.param(SPEC, marks=pytest.mark.slow), PER_STEP],
                         ids=["many_to_one", "many_to_many"])  # fast-suite time: docs/tests.md
def test_trains_a_few_steps(spec):
    losses = train_losses(dict(name="tcn", levels=3, hidden=8, dropout=0.1), spec)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_build_for_per_step_task_returns_sequences():
    assert build_model(dict(name="tcn"), PER_STEP).return_sequences
    assert not build_model(dict(name="tcn"), SPEC).return_sequences


@pytest.mark.parametrize("cfg,field", [
    (dict(name="tcn", dilation=2), "model.dilation"),
    (dict(name="tcn", kernel_size=0), "kernel_size"),
    (dict(name="tcn", channels=()), "channels"),
    (dict(name="tcn", dropout=1.5), "dropout"),
    (dict(name="tcn", init_style="pytorch"), "model.init_style: must be one of flax, torch"),
    (dict(name="tcn", head_std=-0.01), "model.head_std"),
])
def test_bad_config_is_a_clear_error(cfg, field):
    with pytest.raises(ConfigError, match=field):
        build_model(cfg, SPEC)


def _torch_bound(fan_in):
    """PyTorch's kaiming_uniform_(a=sqrt(5)) bound for weights and biases, written out."""
    gain = np.sqrt(2.0 / (1.0 + 5.0))
    return gain * np.sqrt(3.0 / fan_in)


def test_torch_init_starts_where_the_papers_pytorch_code_starts():
    channels, hidden, k, outputs = 8, 32, 8, 4
    model = TCN(outputs, levels=2, hidden=hidden, kernel_size=k, init_style="torch",
                head_std=0.01)
    params = jax.tree.map(np.asarray, init(model, jnp.ones((1, 16, channels)))["params"])
    for level, fan_in_channels in ((0, channels), (1, hidden)):
        block = params[f"TemporalBlock_{level}"]
        for j in range(2):
            fan_in = (fan_in_channels if j == 0 else hidden) * k
            conv = block[f"CausalConv_{j}"]
            w, bias = conv["conv"]["kernel"], conv["conv"]["bias"]  # flax stores W = g V / |V|
            b = _torch_bound(fan_in)
            np.testing.assert_allclose(w.var(), b**2 / 3, rtol=0.15)  # as U(-b, b)
            assert np.abs(bias).max() <= b and bias.std() > 0
            # Torch starts the weight-norm gain at ||V||, so its W is V: E||W||^2 = fan_in b^2 / 3
            # per output channel, the norm ours start at.
            norm = np.sqrt(fan_in * b**2 / 3)
            np.testing.assert_allclose(conv["weight_norm"]["conv/kernel/scale"], norm, rtol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(w.reshape(-1, hidden), axis=0), norm,
                                       rtol=1e-5)
    proj = params["TemporalBlock_0"]["proj"]
    assert 0.007 < proj["kernel"].std() < 0.013 and np.abs(proj["bias"]).max() <= _torch_bound(8)
    head = params["Dense_0"]
    assert 0.007 < head["kernel"].std() < 0.013
    assert np.abs(head["bias"]).max() <= _torch_bound(hidden) and head["bias"].std() > 0


def test_flax_init_is_the_default():
    model = TCN(4, levels=2, hidden=8, kernel_size=3)
    params = init(model, jnp.ones((1, 16, 2)))["params"]
    conv = params["TemporalBlock_0"]["CausalConv_0"]
    wn = conv["weight_norm"]
    np.testing.assert_array_equal(wn["conv/kernel/scale"], 1.0)
    np.testing.assert_array_equal(conv["conv"]["bias"], 0.0)
    np.testing.assert_array_equal(params["Dense_0"]["bias"], 0.0)
