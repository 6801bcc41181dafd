"""What a run says where no terminal redraws a bar: progress lines, each thing said once."""

import io
import logging
import sys
import threading
import types

import pytest

from cnn_rnn.training import distributed, progress, run_record
from experiments import launcher


def test_off_a_terminal_progress_is_a_line_now_and_then(caplog):
    bar = progress.progress_bar(total=10, initial=2, enabled=True)  # pytest's stderr: no tty
    assert isinstance(bar, progress.LineProgress)
    bar.every_s = 0.0
    bar.set_postfix(loss="0.5")
    with caplog.at_level(logging.INFO, logger="cnn_rnn"), bar:
        bar.update(3)
        bar.write("step 5: eval loss=0.4")
        bar.update(5)  # the last step: the finished line says the rest
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("step 5/10 (50%), ") and lines[0].endswith("left, loss=0.5")
    assert lines[1] == "step 5: eval loss=0.4"


def test_only_a_kernel_redraws_not_a_process_that_imported_one(monkeypatch):
    import ipykernel  # noqa: F401 - imported, as a test worker may have, but no kernel runs
    assert not progress._interactive()  # pytest's stderr is no tty
    kernel = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "IPython", kernel)
    assert progress._interactive()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress._interactive()


def test_line_progress_waits_its_interval(caplog):
    bar = progress.LineProgress(total=100, initial=0, every_s=3600.0)
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        for _ in range(50):
            bar.update()
    assert caplog.records == []


def test_a_disabled_bar_says_nothing(capsys):
    with progress.progress_bar(total=5, initial=0, enabled=False) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_the_launcher_drops_gloo_notes_unless_verbose(capsys):
    out = ["[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected peer ranks "
           "is : 1\n", "step 20: eval loss=1.0\n"]
    for quiet, expected in ((True, ["[1] step 20: eval loss=1.0"]),
                            (False, ["[1] " + out[0].rstrip(), "[1] step 20: eval loss=1.0"])):
        proc = types.SimpleNamespace(stdout=io.StringIO("".join(out)))
        launcher._pump(1, proc, threading.Lock(), quiet)
        assert capsys.readouterr().out.splitlines() == expected


@pytest.mark.parametrize("line, kept", [
    # Two threads' notes interleaved at gloo's `<<` pieces (seen in CI).
    ("[Gloo] Rank 1 is connected to [Gloo] Rank 1 is connected to 7 peer ranks. Expected "
     "number of connected peer ranks is : 7\n", ""),
    ("7 peer ranks. Expected number of connected peer ranks is : 7\n", ""),
    ("[Gloo] Rank 12 is connected to 15\n", ""),
    # A warning that a piece landed in front of keeps its words.
    ("[Gloo] Rank 1 is connected to W: disk almost full\n", "W: disk almost full\n"),
    ("step 7: loss=0.5\n", "step 7: loss=0.5\n"),
    ("7\n", "7\n"),
])
def test_gloo_notes_are_dropped_however_threads_interleave_them(line, kept):
    assert launcher.without_chatter(line) == kept


def test_other_processes_keep_only_warnings():
    loggers = [logging.getLogger(n) for n in ("cnn_rnn", "experiments")]
    before = [lg.level for lg in loggers]
    try:
        for lg in loggers:  # the entry points' quiet default
            lg.setLevel(logging.INFO)
        distributed.mute_info_lines()
        assert [lg.level for lg in loggers] == [logging.WARNING] * 2
        for lg in loggers:  # -v: left at the defaults, so everything is said
            lg.setLevel(logging.NOTSET)
        distributed.mute_info_lines()
        assert [lg.level for lg in loggers] == [logging.NOTSET] * 2
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)


def test_the_finished_line_shows_a_diverged_runs_eval_loss():
    # Non-finite metrics are stored as strings (strict JSON); the line said "eval  (baseline".
    summary = {"model": "irnn", "data": "adding", "step": 2250, "params": 69693,
               "eval": {"loss": "nan", "accuracy": 0.5}, "train_seconds": 235.5,
               "baseline": {"metric": "loss", "value": 1 / 6}}
    line = run_record.summary_line(summary)
    assert "eval loss=nan, accuracy=0.5 (baseline loss=0.1667)" in line
