"""Multi-process training on JAX's distributed runtime, started by the local launcher.

2 processes x 4 host devices (gloo collectives over localhost) against 1 process with 8 devices and
with 1 device: the same final metrics, dropout included, because each example's dropout mask is
keyed by its index in the global batch.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnn_rnn.training.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.features=(8,16)", "--config.model.hidden=16",
        "--config.model.dropout=0.3", "--config.batch_size=32", "--config.progress=False",
        "--config.eval_every=15", "--config.checkpoint_every=10", "--config.log_every=5",
        "--config.data.num_samples=600"]


def _run_args(workdir, steps, extra=()):
    return ["--config=configs/mnist1d_cnn.py", f"--workdir={workdir}", f"--config.steps={steps}",
            *TINY, *extra]


def launch(workdir, steps, processes=2, devices=4, extra=(), timeout=300, wait=True):
    """`experiments.launch` of experiments.run on `processes` x `devices` host devices."""
    cmd = [sys.executable, "-m", "experiments.launch", f"--num_processes={processes}",
           f"--devices_per_process={devices}", "--grace_s=60", "--", sys.executable,
           "-m", "experiments.run", *_run_args(workdir, steps, extra)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _final_eval(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)["eval"]


def _assert_same(a, b, rtol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= rtol * max(abs(a[k]), abs(b[k]), 1e-12), (k, a[k], b[k])


@pytest.mark.slow  # three runs in subprocesses, two of them distributed: about 30 s
def test_two_processes_match_one_process_with_eight_devices_and_with_one(tmp_path, cli):
    two = launch(tmp_path / "two", 30)
    assert two.returncode == 0, two.stdout[-3000:]
    # Process 0 alone says the run's lines (the others only warnings and errors).
    assert "[0] 2 processes joined" in two.stdout and "2 process(es)" in two.stdout
    assert "[1] " not in two.stdout, two.stdout
    eight = cli("experiments.run", *_run_args(tmp_path / "eight", 30), devices=8)
    assert eight.returncode == 0, eight.stderr[-3000:]
    one = cli("experiments.run", *_run_args(tmp_path / "one", 30), devices=1)
    assert one.returncode == 0, one.stderr[-3000:]
    ref = _final_eval(tmp_path / "one")
    _assert_same(ref, _final_eval(tmp_path / "eight"))
    _assert_same(ref, _final_eval(tmp_path / "two"))
    # One writer: every record once, as in the one-process run.
    rows = [(r["step"], r["split"]) for r in read_metrics(str(tmp_path / "two"))]
    assert rows == [(r["step"], r["split"]) for r in read_metrics(str(tmp_path / "one"))]


@pytest.mark.slow
def test_a_two_process_run_resumes_on_one_process(tmp_path, cli):
    first = launch(tmp_path / "run", 20)
    assert first.returncode == 0, first.stdout[-3000:]
    rest = cli("experiments.run", *_run_args(tmp_path / "run", 30), devices=8)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "resuming from checkpoint at step 20" in rest.stderr
    # The reference takes the same road on one process: 20 steps, then extended to 30 (a run
    # planned for 30 from the start has another learning-rate schedule).
    for steps in (20, 30):
        ref = cli("experiments.run", *_run_args(tmp_path / "ref", steps), devices=8)
        assert ref.returncode == 0, ref.stderr[-3000:]
    _assert_same(_final_eval(tmp_path / "ref"), _final_eval(tmp_path / "run"))


def _wait_for_checkpoint(workdir, proc, step, timeout=240):
    deadline = time.monotonic() + timeout
    while not os.path.isdir(os.path.join(workdir, "checkpoints", str(step))):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)


def _child_pids(parent):
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["peer", "coordinator"])
def test_a_killed_peer_stops_the_other_and_a_rerun_resumes(tmp_path, cli, victim):
    workdir = tmp_path / "run"
    proc = launch(workdir, 400, extra=["--config.checkpoint_every=10"], wait=False)
    _wait_for_checkpoint(workdir, proc, 10)
    os.kill(_child_pids(proc.pid)[victim], signal.SIGKILL)
    start = time.monotonic()
    out, _ = proc.communicate(timeout=120)
    assert time.monotonic() - start < 60, out[-2000:]
    # The survivor: one error line, none of the runtime's fatal output (process 0, the
    # coordinator, dying made it abort with ~40 lines of stack traces).
    mine = [ln for ln in out.splitlines() if ln.startswith(f"[{1 - victim}] ")]
    assert len([ln for ln in mine if ln.startswith(f"[{1 - victim}] error:")]) == 1, out[-3000:]
    assert not [ln for ln in mine if "Fatal" in ln or "Thread 0x" in ln], out[-3000:]
    again = launch(workdir, 400, extra=["--config.checkpoint_every=10"])
    assert again.returncode == 0, again.stdout[-3000:]
    assert "resuming from checkpoint" in again.stdout
    whole = cli("experiments.run",
                *_run_args(tmp_path / "whole", 400, ["--config.checkpoint_every=10"]), devices=8)
    assert whole.returncode == 0
    _assert_same(_final_eval(tmp_path / "whole"), _final_eval(workdir))


@pytest.mark.slow
def test_sigterm_on_one_process_saves_every_process_at_one_step(tmp_path, cli):
    workdir = tmp_path / "run"
    proc = launch(workdir, 400, extra=["--config.checkpoint_every=100"], wait=False)
    _wait_for_checkpoint(workdir, proc, 100)
    os.kill(_child_pids(proc.pid)[1], signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    preempted = [ln for ln in out.splitlines() if "preempted at step" in ln]
    assert len(preempted) == 2, out[-3000:]
    steps = {ln.split("preempted at step ")[1].split()[0] for ln in preempted}
    assert len(steps) == 1
    assert os.path.isdir(os.path.join(workdir, "checkpoints", steps.pop()))
    again = launch(workdir, 400, extra=["--config.checkpoint_every=100"])
    assert again.returncode == 0, again.stdout[-3000:]
    whole = cli("experiments.run",
                *_run_args(tmp_path / "whole", 400, ["--config.checkpoint_every=100"]), devices=8)
    assert whole.returncode == 0, whole.stderr[-3000:]
    _assert_same(_final_eval(tmp_path / "whole"), _final_eval(workdir))
