"""The training spine: pmap equivalence across device counts, end to end runs, resume."""

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from config_helpers import SMALL_CNN, small_config

from cnn_rnn.data.registry import build_data
from cnn_rnn.models.registry import build_model, model_names
from cnn_rnn.training import loop, parallel
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.loop import train_and_evaluate
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.optim import build_optimizer, learning_rate_schedule
from cnn_rnn.training.state import create_train_state
from cnn_rnn.training.steps import train_step

SMALL_MODELS = {
    "cnn1d": SMALL_CNN,
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


# The CNN's case runs with -m slow (CI time); the GRU's, with its scan, in every run.
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n == "cnn1d" else n for n in sorted(SMALL_MODELS)])
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
    return small_config(steps, **{"batch_size": 64, "checkpoint_every": 10, "eval_every": 20,
                                  **overrides})


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


def test_finished_run_only_reports(tmp_path, monkeypatch):
    first = train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    before = (tmp_path / "metrics.jsonl").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())

    def builds(*args, **kwargs):
        raise AssertionError("a finished run built its data and model again")

    monkeypatch.setattr(loop, "build_run", builds)  # reporting reads files, builds nothing
    again = train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    assert again["eval"] == first["eval"]
    assert (tmp_path / "metrics.jsonl").read_text() == before
    # The rerun trained for 0 s, but the run's training time is still what it was.
    assert first["train_seconds"] > 0
    assert again["train_seconds"] == first["train_seconds"]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_training_longer_resumes_from_the_last_checkpoint(tmp_path, caplog):
    cosine = dict(schedule="cosine")
    train_and_evaluate(_tiny_config(steps=20, optimizer=cosine), str(tmp_path))
    with caplog.at_level(logging.WARNING):
        longer = train_and_evaluate(_tiny_config(steps=40, optimizer=cosine), str(tmp_path))
    assert longer["step"] == 40
    steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    # Documented behaviour: the schedule is re-stretched over the new total, with a warning.
    assert "steps changed from 20 to 40: the cosine learning-rate schedule" in caplog.text
    new = learning_rate_schedule(_tiny_config(steps=40, optimizer=cosine).optimizer, 40)
    resumed = [r for r in read_metrics(str(tmp_path), "train") if r["step"] > 20]
    for r in resumed:
        assert r["learning_rate"] == pytest.approx(float(new(r["step"] - 1)))


def _tb_session_starts(workdir):
    """Steps of the SessionLog.START events (TensorBoard's purge marks) in all event files."""
    from tensorboardX.proto import event_pb2

    steps = []
    for path in (workdir / "tensorboard").iterdir():
        data = path.read_bytes()
        pos = 0
        while pos < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
            n = int.from_bytes(data[pos:pos + 8], "little")
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            if event.HasField("session_log") and event.session_log.status == 1:
                steps.append(event.step)
    return steps


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_crash_then_resume_adds_up_train_seconds_and_purges_tensorboard(tmp_path, monkeypatch):
    # Session 1 runs on a clock 1000x too fast, then dies in the eval at step 40 (after the
    # checkpoint at 30 and the train record at 40). Session 2 runs on the real clock.
    monkeypatch.setattr(loop, "_clock", lambda: 1000.0 * time.monotonic())
    real_evaluate, calls = loop.evaluate, []

    def dying_evaluate(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args)

    monkeypatch.setattr(loop, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_tiny_config(steps=40), str(tmp_path))
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=3)
    assert ckpt.steps() == [10, 20, 30]
    before = ckpt.read_meta(30)["train_seconds"]
    ckpt.close()
    assert before > 100  # ~1000x the real seconds to step 30
    assert 40 in [r["step"] for r in read_metrics(str(tmp_path), "train")]

    monkeypatch.setattr(loop, "_clock", time.monotonic)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    t0 = time.monotonic()
    summary = train_and_evaluate(_tiny_config(steps=40), str(tmp_path))
    elapsed = time.monotonic() - t0
    assert before < summary["train_seconds"] <= before + elapsed
    steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert len(steps) == len(set(steps))
    # TensorBoard hides session 1's events after the checkpoint (from step 31 on).
    assert _tb_session_starts(tmp_path) == [31]


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    train_and_evaluate(_tiny_config(steps=20), str(tmp_path))
    path = tmp_path / "metrics.jsonl"
    records = read_metrics(str(tmp_path))
    with open(path, "a") as f:
        f.write('{"step": 22, "split": "train", "lo')  # power loss mid-write
    assert read_metrics(str(tmp_path)) == records
    summary = train_and_evaluate(_tiny_config(steps=40), str(tmp_path))
    assert summary["step"] == 40
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines][: len(records)] == \
        [r["step"] for r in records]
    assert max(json.loads(ln)["step"] for ln in lines) == 40


def test_corrupt_metrics_line_before_the_last_is_named(tmp_path):
    os.makedirs(tmp_path, exist_ok=True)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\n{"step": 2,\n'
                                            '{"step": 3, "split": "train"}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a JSON record"):
        read_metrics(str(tmp_path))


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_checkpoint_between_log_windows_resumes_to_the_same_records(tmp_path, monkeypatch):
    # checkpoint_every=5 is no multiple of log_every=3: the checkpoint at 5 stores the open
    # window (steps 4-5), so a crash at step 8 resumes from 5 and logs what a full run logs.
    cfg = dict(checkpoint_every=5, log_every=3, eval_every=12)
    full = tmp_path / "full"
    train_and_evaluate(_tiny_config(steps=12, **cfg), str(full))
    train_steps = [r["step"] for r in read_metrics(str(full), "train")]
    assert train_steps == [3, 6, 9, 12]

    real_add = loop.TrainWindow.add

    def dying_add(self, step, metrics):
        if step == 8:
            raise KeyboardInterrupt
        real_add(self, step, metrics)

    crashed = tmp_path / "crashed"
    monkeypatch.setattr(loop.TrainWindow, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(_tiny_config(steps=12, **cfg), str(crashed))
    monkeypatch.setattr(loop.TrainWindow, "add", real_add)
    assert [r["step"] for r in read_metrics(str(crashed), "train")] == [3, 6]
    train_and_evaluate(_tiny_config(steps=12, **cfg), str(crashed))
    assert (full / "metrics.jsonl").read_text() == (crashed / "metrics.jsonl").read_text()
