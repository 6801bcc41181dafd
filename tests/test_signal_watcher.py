"""The signal watcher (cnn_rnn/training/interrupts.py) and the fatal-output filter, fast.

Decisions are checked on a Watcher that is not started; what only a real process shows (a signal
while the main thread is busy, the deadline of a hung step, the first import of an entry point)
in small subprocesses without JAX.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from cnn_rnn.training import fatal_filter, interrupts
from cnn_rnn.training.host_devices import env_with_devices
from cnn_rnn.training.interrupts import Interrupted, Watcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Exited(Exception):
    pass


@pytest.fixture
def watcher(monkeypatch):
    w = Watcher()

    def exit_(error):
        raise Exited(error.line(), error.exit_code)

    monkeypatch.setattr(w, "exit", exit_)
    return w


def test_outside_training_a_signal_exits_at_once(watcher):
    with pytest.raises(Exited) as e:
        watcher.received(signal.SIGINT)
    assert e.value.args == ("interrupted (SIGINT); " + interrupts.BEFORE, 130)
    watcher.trained = True
    with pytest.raises(Exited) as e:
        watcher.received(signal.SIGTERM)
    assert e.value.args == ("interrupted (SIGTERM); " + interrupts.BETWEEN, 143)


def test_while_training_the_first_signal_is_a_request_and_the_second_exits(watcher):
    watcher.request = interrupts.StopRequest()
    before = time.monotonic()
    watcher.received(signal.SIGTERM)
    assert watcher.request.at(5) and watcher.request.signum == signal.SIGTERM
    assert watcher.deadline >= before + interrupts.STOP_DEADLINE_S
    assert watcher.request.error(5).line().startswith("interrupted at step 5; checkpoint saved")
    with pytest.raises(Exited) as e:
        watcher.received(signal.SIGINT)
    assert e.value.args == ("interrupted (SIGINT); " + interrupts.AT_ONCE, 130)


def test_with_several_processes_sigint_becomes_jax_s_preemption_notice(watcher, monkeypatch):
    sent = []
    monkeypatch.setattr(interrupts.os, "kill", lambda pid, signum: sent.append((pid, signum)))
    watcher.preemption = True
    watcher.received(signal.SIGINT)
    assert sent == [(os.getpid(), signal.SIGTERM)] and watcher.deadline is not None
    with pytest.raises(Exited):  # a second Ctrl-C stops at once
        watcher.received(signal.SIGINT)


def test_a_launcher_forwards_every_signal(watcher):
    got = []
    watcher.forward = got.append
    watcher.received(signal.SIGINT)
    watcher.received(signal.SIGTERM)
    assert got == [signal.SIGINT, signal.SIGTERM]


def test_without_the_watcher_training_uses_a_flag_only_handler():
    assert interrupts.installed() is None  # importing experiments in tests installs nothing
    with interrupts.catch_signals() as request:
        signal.raise_signal(signal.SIGINT)
        assert request.signum == signal.SIGINT
        with pytest.raises(Interrupted, match=interrupts.AT_ONCE):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _python(code, signum, after_line="ready", wait=30.0):
    """Run `code` installed with the watcher; send `signum` after it prints `after_line`."""
    prelude = "from cnn_rnn.training import interrupts; interrupts.install()\n"
    proc = subprocess.Popen([sys.executable, "-c", prelude + code], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == after_line
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=wait)
    return proc.returncode, err.splitlines(), time.monotonic() - sent


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_anywhere_is_one_line_even_inside_a_finalizer(signum):
    # The "ignored" runs: a KeyboardInterrupt raised inside a gc callback is swallowed.
    code = ("import time\nclass Slow:\n    def __del__(self):\n        print('ready', flush=True)"
            "\n        time.sleep(20)\nSlow()\nprint('finished')\n")
    rc, lines, took = _python(code, signum)
    assert (rc, lines) == (128 + signum, [f"interrupted ({signum.name}); {interrupts.BEFORE}"])
    assert took < 10


def test_a_stop_request_saves_then_exits_with_one_line():
    code = ("import time\nfrom cnn_rnn.training.interrupts import catch_signals, "
            "exit_interrupted, Interrupted\ntry:\n    with catch_signals() as r:\n"
            "        print('ready', flush=True)\n        while not r.at(7):\n"
            "            time.sleep(0.01)\n        raise r.error(7)\n"
            "except Interrupted as e:\n    exit_interrupted(e)\n")
    rc, lines, _ = _python(code, signal.SIGTERM)
    assert rc == 143
    assert lines == ["interrupted at step 7; checkpoint saved; run the same command to resume"]


def test_a_step_that_never_finishes_exits_at_the_deadline():
    code = ("import threading\ninterrupts.STOP_DEADLINE_S = 1.0\n"
            "with interrupts.catch_signals():\n    print('ready', flush=True)\n"
            "    threading.Event().wait()  # a collective that never completes\n")
    rc, lines, took = _python(code, signal.SIGTERM)
    assert (rc, lines) == (143, [f"interrupted (SIGTERM); {interrupts.hung(1.0)}"])
    assert 0.9 < took < 10


def test_experiments_installs_the_watcher_only_for_its_entry_points():
    check = ("import signal, experiments; "
             "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"


def catches_signals(pid: int) -> bool:
    """Whether process `pid` has handlers for SIGINT and SIGTERM (its watcher is installed)."""
    return interrupts.catches_signals(pid)


@pytest.mark.parametrize("signum, delay", [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.5),
                                           (signal.SIGINT, 1.5)])
def test_an_entry_point_signalled_during_its_first_imports(tmp_path, signum, delay):
    # From the first line of Python on (before it, the interpreter's own start-up, a signal
    # has the system's default effect: the process ends silently, having written nothing).
    workdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run",
                             "--config=configs/mnist1d_cnn.py", f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not catches_signals(proc.pid):
        assert proc.poll() is None
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.splitlines() == [f"interrupted ({signum.name}); {interrupts.BEFORE}"]
    assert not workdir.exists()


def test_sigterm_while_waiting_for_peers_exits_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", "--config=configs/mnist1d_cnn.py",
         f"--workdir={tmp_path / 'run'}", f"--coordinator_address=localhost:{port}",
         "--num_processes=2", "--process_id=0"],
        cwd=ROOT, env=env_with_devices(None), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _listening(port):  # process 0 serves the coordinator, then waits for process 1
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == f"interrupted (SIGTERM); {interrupts.BEFORE}"
    assert [ln for ln in err.splitlines() if ln.startswith("interrupted")] == [
        err.splitlines()[-1]]


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("localhost", port)) == 0


def _filtered(text, who="process 1 of 2"):
    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as dst:
        src.write(text.encode())
        src.seek(0)
        fatal_filter.filter_stream(src.fileno(), dst.fileno(), who)
        dst.seek(0)
        return dst.read().decode()


def test_the_filter_passes_ordinary_output_through():
    text = "I1206 loop.py:161] model cnn1d\nstep 10: eval loss=1.2\rpartial"
    assert _filtered(text) == text


def test_the_filter_drops_the_coordinator_unavailable_warning():
    warning = ("W1206 09:24:04.556291   30442 preemption_sync_manager.cc:147] Failed to retrieve "
               "preemption notice from coordination service: UNAVAILABLE: Socket closed\n")
    assert _filtered("step 10\n" + warning + "step 20\n") == "step 10\nstep 20\n"


def test_the_filter_turns_the_runtime_s_fatal_abort_into_one_line():
    fatal = ("I1206 step 10\nE1206 coordination_service_agent.cc:289] Polled an error from "
             "coordination service (this can be an error from this or another task).\n"
             "F1206 client.h:80] Terminating process because the JAX distributed service "
             "detected fatal errors.\nFatal Python error: Aborted\n\nThread 0x1 (most recent "
             "call first):\n  File \"x.py\", line 3 in f\n")
    assert _filtered(fatal) == "I1206 step 10\n" + fatal_filter.error_line("process 1 of 2") + "\n"


def test_the_filter_adds_no_line_after_the_process_s_own_error_line():
    text = ("error: process 1 of 2 stopped: JaxRuntimeError: Gloo all-reduce failed\n"
            "terminate called after throwing an instance of 'std::bad_cast'\n")
    assert _filtered(text) == text.splitlines(keepends=True)[0]


def test_a_signal_ends_the_process_even_when_its_stderr_reader_is_gone():
    # E.g. a run piped into a program that has exited: the line cannot be written, the exit
    # must happen anyway (the watcher thread died on EPIPE and the process ignored signals).
    code = ("from cnn_rnn.training import interrupts; interrupts.install()\nimport time\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.stderr.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130


def test_other_signals_with_python_handlers_are_not_stop_requests():
    code = ("import signal, time\nsignal.signal(signal.SIGUSR1, lambda s, f: print('usr1', "
            "flush=True))\nprint('ready', flush=True)\ntime.sleep(3)\nprint('done', flush=True)\n")
    prelude = "from cnn_rnn.training import interrupts; interrupts.install()\n"
    proc = subprocess.Popen([sys.executable, "-c", prelude + code], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out.split(), err) == (0, ["usr1", "done"], "")
