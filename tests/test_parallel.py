"""Data-parallel backends (pmap, jit), dropout keyed by example, per-process batch rows."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.training import distributed, parallel
from cnn_rnn.training.example_dropout import keyed_by_example
from cnn_rnn.training.host_devices import (
    DEVICE_COUNT_FLAG,
    EIGEN_FLAG,
    POOL_SIZE_VAR,
    THREADS_PER_DEVICE,
    TIMEOUT_FLAG,
    env_with_devices,
    patient_host_devices,
    with_device_count,
    with_host_devices,
)
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import create_train_state
from cnn_rnn.training.steps import train_step

MODELS = {
    "cnn1d": dict(name="cnn1d", features=(8, 16), hidden=16, dropout=0.5),
    # Two layers: dropout acts between them on time-major [T, B, H] states.
    "gru": dict(name="gru", hidden=16, num_layers=2, dropout=0.5),
}


def _train(model_cfg, backend_name, n_dev, steps=3, batch_size=32):
    data = build_data({"name": "mnist1d"}, seed=0)
    model = build_model(model_cfg, data.spec, axis_name=parallel.AXIS)
    tx = build_optimizer({"name": "adam", "learning_rate": 1e-2}, steps)
    state = create_train_state(model, tx, data.spec.input_shape, jax.random.PRNGKey(0))
    backend = parallel.make_backend(backend_name, jax.devices()[:n_dev])
    step = backend.compile(train_step, donate_state=True, model=model, spec=data.spec)
    state = backend.put_state(state)
    for s in range(steps):
        state, _ = step(state, data.train_batch(s, batch_size))
    return backend.get_state(state).params


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y)))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                               strict=True))


@pytest.mark.slow  # long: in the slow suite, which CI runs after the fast one
@pytest.mark.parametrize("name", sorted(MODELS))
def test_backends_and_device_counts_give_the_same_update_with_dropout(name):
    assert jax.device_count() == 8
    one = _train(MODELS[name], "pmap", 1)
    for backend, n_dev in (("pmap", 8), ("jit", 8), ("jit", 2)):
        other = _train(MODELS[name], backend, n_dev)
        for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(other),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"{backend} {n_dev}")
    # Dropout is active: without it the update differs.
    plain = _train(dict(MODELS[name], dropout=0.0), "pmap", 1)
    assert _max_diff(one, plain) > 1e-4


def _dropout_out(x, ids, rate=0.5, key=0):
    layer = nn.Dropout(rate, deterministic=False)

    def run(x, ids):
        with keyed_by_example(ids):
            return layer.apply({}, x, rngs={"dropout": jax.random.PRNGKey(key)})

    return np.asarray(run(x, ids))


def test_example_dropout_masks_depend_on_the_example_index_not_the_split():
    x = jnp.ones((8, 200), jnp.float32)
    ids = jnp.arange(8)
    whole = _dropout_out(x, ids)
    halves = np.concatenate([_dropout_out(x[:4], ids[:4]), _dropout_out(x[4:], ids[4:])])
    np.testing.assert_array_equal(whole, halves)
    # Inverted dropout: kept entries scaled by 1/keep; about half dropped; rows differ.
    assert set(np.unique(whole)) <= {0.0, 2.0}
    assert 0.4 < np.mean(whole == 0) < 0.6
    assert not np.array_equal(whole[0], whole[1])
    # Another order of the same examples moves the masks with them.
    perm = np.array([3, 1, 7, 0, 2, 6, 5, 4])
    np.testing.assert_array_equal(_dropout_out(x, ids[perm]), whole[perm])


def test_example_dropout_uses_a_time_major_modules_batch_axis():
    class TimeMajor(nn.Module):
        dropout_batch_axis = 1

        @nn.compact
        def __call__(self, x):
            return nn.Dropout(0.5, deterministic=False)(jnp.swapaxes(x, 0, 1))

    x = jnp.ones((6, 5, 3))  # [B, T, H]; the module drops on [T, B, H]
    ids = jnp.arange(6)

    def run(x, ids):
        with keyed_by_example(ids):
            return TimeMajor().apply({}, x, rngs={"dropout": jax.random.PRNGKey(1)})

    whole = np.asarray(run(x, ids))
    part = np.asarray(run(x[2:4], ids[2:4]))
    np.testing.assert_array_equal(whole[:, 2:4], part)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="parallelism.*accepted: 'pmap', 'jit'"):
        parallel.make_backend("pmapp")


def test_local_rows_partition_the_global_batch(monkeypatch):
    batch = {"inputs": np.arange(12.0)[:, None], "targets": np.arange(12)}
    monkeypatch.setattr(distributed, "process_count", lambda: 3)
    rows = []
    for p in range(3):
        monkeypatch.setattr(distributed, "process_index", lambda p=p: p)
        rows.append(distributed.local_rows(batch))
    np.testing.assert_array_equal(np.concatenate([r["targets"] for r in rows]), batch["targets"])
    np.testing.assert_array_equal(np.concatenate([r["example_id"] for r in rows]), np.arange(12))
    with pytest.raises(ConfigError, match="batch_size: 12 does not divide over 5 processes"):
        monkeypatch.setattr(distributed, "process_count", lambda: 5)
        distributed.local_rows(batch)


def test_forced_host_devices_get_the_contention_flags_and_nothing_else_does():
    flags = with_host_devices("--xla_foo=1", 4).split()
    assert f"{DEVICE_COUNT_FLAG}=4" in flags and "--xla_foo=1" in flags
    assert f"{EIGEN_FLAG}=false" in flags and any(f.startswith(TIMEOUT_FLAG) for f in flags)
    assert with_host_devices("--xla_foo=1", None) == "--xla_foo=1"
    # A flag the user set is kept as set.
    kept = with_host_devices(f"{DEVICE_COUNT_FLAG}=8 {TIMEOUT_FLAG}=5", None).split()
    assert kept == [f"{DEVICE_COUNT_FLAG}=8", f"{TIMEOUT_FLAG}=5", f"{EIGEN_FLAG}=false"]


def test_a_child_gets_its_own_device_count_and_every_other_flag_of_the_parent(monkeypatch):
    parent = f"--xla_foo=1 {DEVICE_COUNT_FLAG}=8 --xla_bar=x"
    assert with_device_count(parent, 2) == f"--xla_foo=1 --xla_bar=x {DEVICE_COUNT_FLAG}=2"
    assert with_device_count(parent, None) == "--xla_foo=1 --xla_bar=x"
    monkeypatch.setenv("XLA_FLAGS", parent)
    env = env_with_devices(3, PYTHONUNBUFFERED="1")
    assert env["XLA_FLAGS"] == f"--xla_foo=1 --xla_bar=x {DEVICE_COUNT_FLAG}=3"
    assert env["PYTHONUNBUFFERED"] == "1" and os.environ["XLA_FLAGS"] == parent


def test_forced_host_devices_get_thread_pools_wider_than_the_devices():
    env = {"XLA_FLAGS": f"{DEVICE_COUNT_FLAG}=4"}
    patient_host_devices(env)
    assert env[POOL_SIZE_VAR] == str(4 * THREADS_PER_DEVICE)
    env = {"XLA_FLAGS": f"{DEVICE_COUNT_FLAG}=4", POOL_SIZE_VAR: "3"}
    patient_host_devices(env)
    assert env[POOL_SIZE_VAR] == "3"  # the user's choice is kept
    env = {}
    patient_host_devices(env)
    assert env == {}  # nothing forced, nothing set


@pytest.mark.parametrize("flags, field", [
    (dict(num_processes=0, coordinator_address="h:1", process_id=0), "num_processes"),
    (dict(num_processes=2, coordinator_address="h:1", process_id=2), "process_id"),
    (dict(num_processes=2, coordinator_address="nohostport", process_id=0),
     "coordinator_address"),
    # Ports JAX does not refuse (it waited for peers in silence): 0 and beyond 65535.
    (dict(num_processes=2, coordinator_address="h:0", process_id=0), "coordinator_address"),
    (dict(num_processes=2, coordinator_address="h:65536", process_id=0), "coordinator_address"),
])
def test_bad_cluster_flags_are_config_errors(flags, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        distributed.check_flags(distributed.ClusterFlags(**flags))
