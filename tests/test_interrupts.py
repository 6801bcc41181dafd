"""Ctrl-C (SIGINT) and SIGTERM at random moments of a real training process: one line, exit
130 / 143, a checkpoint at the step reached, and a rerun that ends equal to an uninterrupted run.
"""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.host_devices import env_with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = env_with_devices(2, PYTHONUNBUFFERED="1")
STEPS = 240  # signals land after steps 20-200 (test_ten_random_moments): still training
RUN = [sys.executable, "-m", "experiments.run", "--config=configs/mnist1d_cnn.py",
       "--config.model.features=(8, 16)", "--config.model.hidden=16", "--config.progress=False",
       f"--config.steps={STEPS}", "--config.checkpoint_every=50", "--config.log_every=20",
       "--config.eval_every=100"]
LINE = re.compile(r"^interrupted at step (\d+); checkpoint saved; run the same command to resume$")


def _steps_and_final(workdir):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=100)
    steps = ckpt.steps()
    final = ckpt.manager.restore(steps[-1], args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]
    ckpt.close()
    return steps, final


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    subprocess.run([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=600)
    return workdir


def _wait_for_step(proc, workdir, step, timeout=300):
    """Block until the train record of `step` is written (start-up and compilation are over)."""
    deadline = time.time() + timeout
    metrics = workdir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and f'"step": {step},' in metrics.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"training did not reach step {step}")


def _interrupt(tmp_path, uninterrupted, signum, after, twice=False):
    """Signal the run right after its train record at step `after` (a multiple of 20)."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_step(proc, workdir, after)
    proc.send_signal(signum)
    if twice:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, err
    match = LINE.match(lines[0])
    if not twice:
        assert match, lines[0]
    if match:
        step = int(match.group(1))
        assert 0 < step < STEPS
        assert step in _steps_and_final(str(workdir))[0]
    rerun = subprocess.run([*RUN, f"--workdir={workdir}"], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "unreadable" not in rerun.stderr, rerun.stderr
    if match:
        assert f"resuming from checkpoint at step {step} of {STEPS}" in rerun.stderr
    assert (uninterrupted / "metrics.jsonl").read_text() == \
        (workdir / "metrics.jsonl").read_text()
    a, b = _steps_and_final(str(uninterrupted))[1], _steps_and_final(str(workdir))[1]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    return lines[0]


@pytest.mark.slow  # moved from the fast suite to keep the README's test command within 10 min
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_at_the_step_reached_and_resumes_exactly(tmp_path, uninterrupted, signum):
    _interrupt(tmp_path, uninterrupted, signum, after=40)


@pytest.mark.slow  # long: in the slow suite, which CI runs after the fast one
def test_second_ctrl_c_stops_at_once_and_loses_nothing_older(tmp_path, uninterrupted):
    _interrupt(tmp_path, uninterrupted, signal.SIGINT, after=60, twice=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("trial", range(10))
def test_ten_random_moments(tmp_path, uninterrupted, signum, trial):
    after = 20 * int(np.random.default_rng(1000 * signum + trial).integers(1, 11))
    _interrupt(tmp_path, uninterrupted, signum, after)


# A step that never completes (as a collective whose peer never arrives): the run's main thread
# waits inside XLA, where no Python handler runs; the watcher thread stops it at the deadline.
HANG = """
import sys, threading
import jax
from cnn_rnn.training import interrupts, loop, steps
interrupts.install()

def hanging(state, batch, **static):
    state, metrics = steps.train_step(state, batch, **static)
    jax.debug.callback(lambda s: s >= 30 and threading.Event().wait(), state.step)
    return state, metrics

loop.train_step = hanging
from experiments import cli, run
sys.argv = ["run", *sys.argv[1:]]
cli.run_main(run.main)
"""


@pytest.mark.slow
def test_sigterm_during_a_hung_step_exits_within_30s_and_keeps_the_last_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    args = [*RUN[3:], "--config.checkpoint_every=20", f"--workdir={workdir}"]
    proc = subprocess.Popen([sys.executable, "-c", HANG, *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(proc, workdir, 20, timeout=900)  # start-up on a loaded CI machine
        while not (workdir / "checkpoints" / "20").is_dir():
            time.sleep(0.05)
        time.sleep(3)  # into the hung step 30
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # it hangs for ever if the test fails before its exit
    assert time.monotonic() - sent < 30, err
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert lines == ["interrupted (SIGTERM); the step in progress did not finish within 25 s; "
                     "stopped without saving; run the same command to resume from the newest "
                     "checkpoint"], err
    assert "Traceback" not in err
    # The resume point: the newest checkpoint is the one before the hang, and it restores
    # (resuming from a checkpoint exactly is the other tests' subject).
    assert _steps_and_final(str(workdir))[0][-1] == 20


@pytest.mark.slow
def test_signals_at_random_moments_of_a_run_s_whole_life(tmp_path):
    """A few of experiments.reliability's trials (docs/reliability.md has 60)."""
    from experiments.reliability_trials import signal_trials

    trials, _ = signal_trials(4, seed=1, scratch=str(tmp_path))
    assert len(trials) == 4
    for t in trials:
        assert t.one_line and t.exact is not False and not t.written_before_training, t


@pytest.mark.parametrize("code, lines, exit_s, ended", [
    (0, [], 0.002, True),  # exited on its own in the instant the signal was sent
    (0, [], 3.0, False),  # ignored the signal and trained on: a failure the trials must show
    (130, ["interrupted at step 4; checkpoint saved"], 0.002, False),
    (0, ["interrupted after the last step"], 0.002, False),
    (0, [], None, False),  # no exit time measured: not known to have ended first
])
def test_a_trial_whose_run_was_already_exiting_is_not_counted(code, lines, exit_s, ended):
    from experiments.reliability_trials import SignalTrial

    trial = SignalTrial(2, 1.0, code=code, exit_s=exit_s, lines=lines)
    assert trial.ended_first is ended
    trial.crashed = True  # a traceback while exiting is a failure whenever the signal came
    assert not trial.ended_first
