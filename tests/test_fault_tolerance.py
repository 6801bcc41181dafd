"""Fault injection with real processes and files: SIGKILL, divergence, corrupt checkpoints,
concurrent runs, mismatched resumes, determinism."""

import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from config_helpers import small_config

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.host_devices import env_with_devices
from cnn_rnn.training.loop import NonFiniteError, train_and_evaluate
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.workdir_lock import WorkdirLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = env_with_devices(2, PYTHONUNBUFFERED="1")
STEPS = 300  # six checkpoints; a kill lands in start-up, training or a save
RUN = [sys.executable, "-m", "experiments.run", "--config=configs/mnist1d_cnn.py",
       "--config.model.features=(8, 16)", "--config.model.hidden=16", "--config.progress=False",
       f"--config.steps={STEPS}", "--config.checkpoint_every=50", "--config.log_every=20",
       "--config.eval_every=100"]


def _checkpoint_states(workdir):
    """{step: state pytree} of every finished checkpoint in the workdir."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=100)
    out = {s: ckpt.manager.restore(s, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"] for s in ckpt.steps()}
    ckpt.close()
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    t0 = time.time()
    subprocess.run([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=300)
    return workdir, time.time() - t0


def _kill_and_resume(tmp_path, uninterrupted, fraction):
    full, seconds = uninterrupted
    workdir = tmp_path / "killed"
    proc = subprocess.Popen([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(fraction * seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (full / "metrics.jsonl").read_text() == (workdir / "metrics.jsonl").read_text()
    a, b = _checkpoint_states(str(full))[STEPS], _checkpoint_states(str(workdir))[STEPS]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow  # moved from the fast suite to keep the README's test command within 10 min
@pytest.mark.parametrize("trial", range(1))  # ten more below
def test_sigkill_at_a_random_point_then_rerun_matches_uninterrupted(tmp_path, uninterrupted,
                                                                    trial):
    # Kill somewhere in the run (start-up, mid-training or mid-checkpoint), then rerun.
    fraction = np.random.default_rng(trial).uniform(0.4, 0.95)
    _kill_and_resume(tmp_path, uninterrupted, fraction)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_sigkill_ten_random_points(tmp_path, uninterrupted, trial):
    fraction = np.random.default_rng(100 + trial).uniform(0.05, 1.0)
    _kill_and_resume(tmp_path, uninterrupted, fraction)


def _config(steps=20, **overrides):
    return small_config(steps, **{"batch_size": 32, "checkpoint_every": 5, "eval_every": 10,
                                  **overrides})


def _nonfinite_checkpoints(workdir):
    """Steps of checkpoints holding any non-finite value."""
    states = _checkpoint_states(str(workdir))
    return [step for step, s in states.items()
            if not all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(s))]


DIVERGE = dict(optimizer=dict(name="sgd", learning_rate=1e30, momentum=0.0))


def test_divergence_stops_with_the_step_and_quantity(tmp_path):
    with pytest.raises(NonFiniteError, match=r"step \d+: non-finite"):
        train_and_evaluate(_config(**DIVERGE), str(tmp_path))
    assert _nonfinite_checkpoints(tmp_path) == []


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_divergence_cli_is_one_line(cli, tmp_path):
    proc = cli("experiments.run", "--config=configs/mnist1d_cnn.py", "--config.steps=20",
               "--config.progress=False", "--config.optimizer.name=sgd",
               "--config.optimizer.learning_rate=1e30", f"--workdir={tmp_path}", devices=1)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error: step ")]


def test_divergence_skip_keeps_training_finite(tmp_path):
    summary = train_and_evaluate(_config(on_nonfinite="skip", **DIVERGE), str(tmp_path))
    assert summary["step"] == 20
    assert sum(r["skipped"] for r in read_metrics(str(tmp_path), "train")) > 0
    assert 20 in _checkpoint_states(str(tmp_path))
    assert _nonfinite_checkpoints(tmp_path) == []


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_corrupt_newest_checkpoint_falls_back_and_continues(tmp_path, caplog):
    train_and_evaluate(_config(steps=20), str(tmp_path))
    newest = tmp_path / "checkpoints" / "20"
    for path in newest.rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")
    with caplog.at_level(logging.WARNING):
        summary = train_and_evaluate(_config(steps=30), str(tmp_path))
    assert "checkpoint at step 20 is unreadable" in caplog.text
    assert summary["step"] == 30
    assert list((tmp_path / "unreadable_checkpoints").iterdir())
    assert 30 in _checkpoint_states(str(tmp_path))
    train_steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert train_steps == sorted(set(train_steps))


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_second_run_on_a_live_workdir_is_refused(cli, tmp_path):
    with WorkdirLock(str(tmp_path)):
        proc = cli("experiments.run", "--config=configs/mnist1d_cnn.py", "--config.steps=2",
                   f"--workdir={tmp_path}", devices=1)
    assert proc.returncode == 2
    assert "in use by another run" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_a_killed_run_leaves_no_stuck_lock(tmp_path):
    code = ("import sys, time; from cnn_rnn.training.workdir_lock import WorkdirLock; "
            "lock = WorkdirLock(sys.argv[1]); lock.__enter__(); print('locked', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match="in use"), WorkdirLock(str(tmp_path)):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with WorkdirLock(str(tmp_path)):
        pass


def test_resume_with_a_different_model_is_refused(tmp_path):
    train_and_evaluate(_config(steps=10), str(tmp_path))
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"\(model\.hidden: 16 -> 32\)"):
        train_and_evaluate(_config(steps=10, model=dict(hidden=32)), str(tmp_path))
    # A field the first run left at its default is compared as that default.
    with pytest.raises(ConfigError, match=r"data\.shuffle_positions: False -> True"):
        train_and_evaluate(_config(steps=10, data=dict(shuffle_positions=True)), str(tmp_path))
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert sorted(_checkpoint_states(str(tmp_path))) == [5, 10]


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_same_config_and_seed_give_identical_metrics(tmp_path):
    train_and_evaluate(_config(steps=20), str(tmp_path / "a"))
    train_and_evaluate(_config(steps=20), str(tmp_path / "b"))
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == \
        (tmp_path / "b" / "metrics.jsonl").read_text()


def _workdir_files(workdir):
    """{relative path: bytes} of everything a refused run must leave alone."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# (override, text the error must contain): optimizer changes of both kinds, those that change
# the optimizer state's tree (these used to be mistaken for corrupt checkpoints and restarted the
# run) and those that keep it (these used to be accepted silently).
OPTIMIZER_CHANGES = [
    (dict(grad_clip_norm=1.0), "optimizer.grad_clip_norm: 0.0 -> 1.0"),
    (dict(name="adam", weight_decay=1e-4), "optimizer.name: 'adamw' -> 'adam'; "
                                           "optimizer.weight_decay: 0.0 -> 0.0001"),
    (dict(name="sgd", momentum=0.0), "optimizer.momentum: 0.9 -> 0.0; "
                                     "optimizer.name: 'adamw' -> 'sgd'"),
    (dict(learning_rate=0.1), "optimizer.learning_rate: 0.01 -> 0.1"),
    (dict(schedule="cosine"), "optimizer.schedule: 'constant' -> 'cosine'"),
]


@pytest.mark.slow  # long: in the slow suite, which CI runs after the fast one
def test_resume_with_a_different_optimizer_is_refused_and_touches_nothing(tmp_path):
    train_and_evaluate(_config(steps=10), str(tmp_path))
    before = _workdir_files(tmp_path)
    for override, text in OPTIMIZER_CHANGES:
        with pytest.raises(ConfigError) as info:
            train_and_evaluate(_config(steps=20, optimizer=override), str(tmp_path))
        assert text in str(info.value)
        assert str(info.value).startswith("workdir: holds checkpoints of a different run")
        assert "\n" not in str(info.value)
    assert _workdir_files(tmp_path) == before
    assert not (tmp_path / "unreadable_checkpoints").exists()
    # The fields that may change still may: a longer run with other reporting resumes.
    summary = train_and_evaluate(_config(steps=15, eval_every=5, keep_checkpoints=5),
                                 str(tmp_path))
    assert summary["step"] == 15
    assert sorted(_checkpoint_states(str(tmp_path))) == [5, 10, 15]


@pytest.mark.slow  # moved from the fast suite to keep the README's test command within 10 min
def test_optimizer_change_cli_exits_with_one_line(cli, tmp_path):
    args = ["--config=configs/mnist1d_cnn.py", "--config.steps=4", "--config.checkpoint_every=2",
            "--config.log_every=2", "--config.eval_every=4", "--config.progress=False",
            f"--workdir={tmp_path}"]
    assert cli("experiments.run", *args, devices=1).returncode == 0
    before = _workdir_files(tmp_path)
    proc = cli("experiments.run", *args, "--config.steps=8",
               "--config.optimizer.grad_clip_norm=1.0", devices=1)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1
    assert "optimizer.grad_clip_norm: 0.0 -> 1.0" in errors[0]
    assert _workdir_files(tmp_path) == before
    assert not (tmp_path / "unreadable_checkpoints").exists()


def _save_legacy_checkpoint(workdir, optimizer, step=10):
    """A checkpoint as older versions wrote it: the record holds model, data, seed, batch size."""
    from cnn_rnn.data.registry import build_data
    from cnn_rnn.models.registry import build_model
    from cnn_rnn.training import parallel
    from cnn_rnn.training.optim import build_optimizer
    from cnn_rnn.training.state import create_train_state

    cfg = _config(steps=20)
    data = build_data(cfg.data.to_dict(), seed=0)
    model = build_model(cfg.model.to_dict(), data.spec, axis_name=parallel.AXIS)
    state = create_train_state(model, build_optimizer(optimizer, 20), data.spec.input_shape,
                               jax.random.PRNGKey(0))
    state = state.replace(step=step)
    meta = {"model": {"name": "cnn1d", "features": [8, 16], "hidden": 16},
            "data": {"name": "mnist1d"}, "seed": 0, "batch_size": 32}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
    ckpt.save(step, jax.device_get(state), meta)
    ckpt.close()


def test_checkpoint_that_does_not_fit_is_refused_not_set_aside(tmp_path):
    # An old record cannot name the optimizer; the state's tree still tells it apart.
    sgd = dict(name="sgd", learning_rate=1e-2, momentum=0.0)
    _save_legacy_checkpoint(tmp_path, sgd)
    with pytest.raises(ConfigError, match=r"step 10 does not fit this config.s train state \(opt"):
        train_and_evaluate(_config(steps=20), str(tmp_path))
    assert not (tmp_path / "unreadable_checkpoints").exists()
    assert not (tmp_path / "metrics.jsonl").exists()
    # The same old checkpoint with a config that fits resumes (older records are accepted).
    summary = train_and_evaluate(_config(steps=20, optimizer=sgd), str(tmp_path))
    assert summary["step"] == 20
    assert [r["step"] for r in read_metrics(str(tmp_path), "eval")] == [20]
