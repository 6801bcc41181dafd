"""The training spine: pmap equivalence across device counts, end to end runs, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data.registry import build_data
from cnn_rnn.models.registry import build_model, model_names
from cnn_rnn.training import parallel
from cnn_rnn.training.loop import train_and_evaluate
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import create_train_state
from cnn_rnn.training.steps import train_step
from configs.common import base_config

SMALL_MODELS = {
    "cnn1d": dict(name="cnn1d", features=(8, 16), hidden=16),
    "gru": dict(name="gru", hidden=16),
}


def _run_steps(model_cfg, n_dev, steps=3, batch_size=32):
    data = build_data({"name": "mnist1d"}, seed=0)
    model = build_model(model_cfg, data.spec, axis_name=parallel.AXIS)
    tx = build_optimizer({"name": "adam", "learning_rate": 1e-2}, steps)
    state = create_train_state(model, tx, data.spec.input_shape, jax.random.PRNGKey(0))
    devices = jax.local_devices()[:n_dev]
    p_step = parallel.pmap_step(train_step, devices=devices, model=model, spec=data.spec)
    state = parallel.replicate(state, devices)
    for s in range(steps):
        state, _ = p_step(state, parallel.shard(data.train_batch(s, batch_size), n_dev))
    return jax.device_get(parallel.unreplicate(state))


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_one_and_eight_devices_give_the_same_update(name):
    if SMALL_MODELS[name]["name"] not in model_names():
        pytest.fail(f"model {name} is not registered")
    assert jax.local_device_count() == 8
    one = _run_steps(SMALL_MODELS[name], 1)
    eight = _run_steps(SMALL_MODELS[name], 8)
    for a, b in zip(jax.tree_util.tree_leaves((one.params, one.batch_stats)),
                    jax.tree_util.tree_leaves((eight.params, eight.batch_stats)), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # The update is not trivially zero: parameters moved from their initial values.
    init = _run_steps(SMALL_MODELS[name], 1, steps=0)
    leaves = zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(init.params),
                 strict=True)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in leaves)
    assert moved > 1e-3


def _tiny_config(steps=40, **overrides):
    c = base_config(model=SMALL_MODELS["cnn1d"], data=dict(name="mnist1d"), steps=steps,
                    batch_size=64, learning_rate=1e-2, checkpoint_every=10, eval_every=20)
    c.progress = False
    for k, v in overrides.items():
        c[k] = v
    return c


def test_train_and_evaluate_learns_and_writes_records(tmp_path):
    summary = train_and_evaluate(_tiny_config(), str(tmp_path))
    assert summary["step"] == 40
    assert summary["eval"]["accuracy"] > 0.3  # chance is 0.1
    train = read_metrics(str(tmp_path), "train")
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["step"] for r in read_metrics(str(tmp_path), "eval")] == [20, 40]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["20", "30", "40"]
    assert (tmp_path / "config.json").exists()
    assert any((tmp_path / "tensorboard").iterdir())


def test_finished_run_only_reports(tmp_path):
    first = train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    before = (tmp_path / "metrics.jsonl").read_text()
    again = train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    assert again["eval"] == first["eval"]
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_training_longer_resumes_from_the_last_checkpoint(tmp_path):
    train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    longer = train_and_evaluate(_tiny_config(steps=40), str(tmp_path))
    assert longer["step"] == 40
    steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
