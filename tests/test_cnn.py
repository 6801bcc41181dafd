"""CNN1D, CNN2D, ResNet: shapes, weight sharing, BatchNorm under pmap, training, bad configs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import train_losses

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.cnn import CNN1D, CNN2D, ResNet
from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.state import param_count

KEY = jax.random.PRNGKey(0)
IMAGES = TaskSpec(kind="classification", num_outputs=3, input_shape=(8, 8, 3))
SEQUENCES = TaskSpec(kind="classification", num_outputs=3, input_shape=(16, 2))
SMALL = {
    "cnn1d": (dict(name="cnn1d", features=(8, 8), hidden=8), SEQUENCES),
    "cnn2d": (dict(name="cnn2d", features=(8, 8), hidden=8), IMAGES),
    "resnet": (dict(name="resnet", depth=8, width=4), IMAGES),
}


def n_params(model, shape):
    """Parameter count from shapes only (jax.eval_shape: no compute)."""
    variables = jax.eval_shape(model.init, KEY, jnp.zeros(shape))
    return param_count(variables["params"])


@pytest.mark.parametrize("model,shape", [
    (CNN1D(5, features=(4, 8), hidden=0), (2, 20, 3)),
    (CNN1D(5, features=(4,), head="mean"), (2, 20, 3)),
    (CNN2D(5, features=(4, 8)), (2, 12, 10, 1)),
    (ResNet(5, depth=8, width=4, shortcut="identity"), (2, 9, 9, 1)),
])
def test_output_shape(model, shape):
    variables = jax.jit(model.init)(KEY, jnp.zeros(shape))
    out = jax.jit(model.apply)(variables, jnp.ones(shape))
    assert out.shape == (shape[0], 5)
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("model,small,large", [
    (CNN1D(5, head="mean"), (1, 32, 2), (1, 96, 2)),
    (CNN2D(5, head="mean"), (1, 16, 16, 3), (1, 40, 24, 3)),
    (ResNet(5, depth=8), (1, 16, 16, 3), (1, 32, 32, 3)),
])
def test_weight_sharing_param_count_independent_of_input_size(model, small, large):
    assert n_params(model, small) == n_params(model, large)


def test_flatten_head_grows_with_input_size():
    # The contrast: a flatten head has a weight per position, so its size follows the input.
    assert n_params(CNN1D(5), (1, 64, 1)) > n_params(CNN1D(5), (1, 32, 1))


def test_resnet20_matches_paper_size():
    # He et al. 2016, Table 6: ResNet-20 (option A shortcuts) has 0.27M parameters.
    count = n_params(ResNet(10, depth=20, shortcut="identity"), (1, 32, 32, 3))
    assert 0.26e6 < count < 0.28e6
    assert n_params(ResNet(10, depth=20), (1, 32, 32, 3)) > count  # projections add weights


def test_cnn1d_mask_zeroes_padding():
    model = CNN1D(4, features=(4,), batch_norm=False)
    x = jax.random.normal(KEY, (2, 12, 1))
    mask = jnp.arange(12)[None] < jnp.array([[12], [7]])
    variables = model.init(KEY, x)
    garbage = jnp.where(mask[..., None], x, 1e3)
    np.testing.assert_allclose(model.apply(variables, garbage, mask=mask),
                               model.apply(variables, jnp.where(mask[..., None], x, 0.0)),
                               rtol=1e-6)


# ResNet's BatchNorm run is -m slow (fast-suite time, docs/tests.md).
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "resnet" else n for n in sorted(SMALL)])
def test_trains_a_few_steps(name):
    losses = train_losses(*SMALL[name])
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def _batch_stats(model, variables, x):
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return updates["batch_stats"]


@pytest.mark.parametrize("cls,kwargs", [
    (CNN2D, dict(features=(4, 4), hidden=0)),
    pytest.param(ResNet, dict(depth=8, width=4), marks=pytest.mark.slow),  # same BatchNorm path
])
def test_batchnorm_statistics_sync_across_pmap_devices(cls, kwargs):
    n = jax.local_device_count()
    if n < 2:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    x = jax.random.normal(KEY, (2 * n, 8, 8, 3)) * jnp.arange(1, 2 * n + 1)[:, None, None, None]
    single = cls(3, **kwargs)
    variables = single.init(KEY, x[:1])
    want = _batch_stats(single, variables, x)
    synced = jax.pmap(functools.partial(_batch_stats, cls(3, axis_name="batch", **kwargs)),
                      axis_name="batch", in_axes=(None, 0))
    got = synced(variables, x.reshape(n, 2, *x.shape[1:]))
    for w, g in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got), strict=True):
        # Every device holds the statistics of the whole global batch.
        np.testing.assert_allclose(g, np.broadcast_to(w, g.shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg,field", [
    (dict(name="cnn2d", kernal_size=3), "model.kernal_size"),
    (dict(name="cnn2d", head="max"), "head"),
    (dict(name="resnet", depth=9), "depth"),
    (dict(name="resnet", shortcut="zero"), "shortcut"),
])
def test_bad_config_is_a_clear_error(cfg, field):
    with pytest.raises(ConfigError, match=field):
        build_model(cfg, IMAGES)


def test_build_sets_axis_name_and_outputs():
    model = build_model(dict(name="resnet", depth=8), IMAGES, axis_name="batch")
    assert (model.num_outputs, model.axis_name) == (3, "batch")
