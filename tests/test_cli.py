"""The runner as a user meets it: real subprocesses, bad input, SIGKILL and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cnn_rnn.training.checkpoints import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CNN = "--config=configs/mnist1d_cnn.py"
TINY = ["--config.model.features=(8, 16)", "--config.model.hidden=16", "--config.progress=False"]


def _error_line(proc):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


BAD_INPUTS = [
    ("unknown model", [CNN, "--config.model.name=nope"], "model.name"),
    ("unknown data", [CNN, "--config.data.name=nope"], "data.name"),
    ("missing config file", ["--config=configs/does_not_exist.py"], "does_not_exist"),
    ("unknown config key", [CNN, "--config.nope=1"], "nope"),
    ("wrong value type", [CNN, "--config.steps=many"], "steps"),
    ("steps < 1", [CNN, "--config.steps=0"], "steps"),
    ("batch_size < 1", [CNN, "--config.batch_size=0"], "batch_size"),
    ("batch not divisible", [CNN, "--config.batch_size=12"], "batch_size"),
    ("unknown model kwarg", ["--config=configs/mnist1d_cnn.py:steps=x"], "steps"),
    ("bad optimizer", [CNN, "--config.optimizer.name=adagrad"], "optimizer.name"),
]


@pytest.mark.parametrize("args,field", [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, field):
    workdir = tmp_path / "run"
    proc = cli("experiments.run", *args, f"--workdir={workdir}", timeout=120)
    assert field in _error_line(proc)
    assert not workdir.exists()


def test_workdir_that_cannot_be_created(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli("experiments.run", CNN, *TINY, "--config.steps=2",
               f"--workdir={blocker}/run", timeout=120)
    assert "workdir" in _error_line(proc)


def _final_params(workdir):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
    step = ckpt.steps()[-1]
    import orbax.checkpoint as ocp

    out = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    ckpt.close()
    return step, out["state"]["params"]


def _run_args(workdir):
    return [sys.executable, "-m", "experiments.run", CNN, *TINY, "--config.steps=600",
            "--config.checkpoint_every=50", "--config.log_every=10", "--config.eval_every=100",
            f"--workdir={workdir}"]


def test_sigkill_after_a_checkpoint_then_rerun_matches_uninterrupted(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_run_args(full), cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)

    proc = subprocess.Popen(_run_args(killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckdir = killed / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = [int(p.name) for p in ckdir.glob("*") if p.name.isdigit()] if ckdir.exists() else []
        if any(s >= 100 for s in done):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "run finished before it could be killed"
    assert not (killed / "checkpoints" / "600").exists()

    rerun = subprocess.run(_run_args(killed), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from checkpoint" in rerun.stderr

    assert (full / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()
    step_a, params_a = _final_params(str(full))
    step_b, params_b = _final_params(str(killed))
    assert step_a == step_b == 600
    for a, b in zip(jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["step"] == 600
