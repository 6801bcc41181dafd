"""Sweeps: validation before running, skipping finished points, resuming, refusing a changed
config, naming a diverging point, the report."""

import json
import logging
import os
from typing import Any

import pytest

from cnn_rnn.errors import ConfigError
from cnn_rnn.sweep import Point, run_sweep
from cnn_rnn.tables import markdown_table
from cnn_rnn.training.loop import NonFiniteError
from configs.common import base_config


def _point(name, hidden=8, steps=10, **model):
    c = base_config(model=dict(name="cnn1d", features=(4,), hidden=hidden, **model),
                    data=dict(name="mnist1d"), steps=steps, batch_size=32, learning_rate=1e-2)
    c.progress = False
    return Point(name, c, dict(hidden=hidden))


def test_a_sweep_runs_every_point_and_writes_results(tmp_path):
    rows = run_sweep([_point("a", 8), _point("b", 16)], str(tmp_path))
    assert [r["name"] for r in rows] == ["a", "b"]
    assert [r["hidden"] for r in rows] == [8, 16]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in saved] == ["a", "b"]
    table = markdown_table(rows, [("point", "name"), ("acc", "eval.accuracy")])
    assert table.count("\n") == 3


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_an_interrupted_sweep_resumes_without_redoing_finished_points(tmp_path):
    run_sweep([_point("a")], str(tmp_path))  # the sweep "died" after its first point
    first = (tmp_path / "a" / "metrics.jsonl").stat().st_mtime_ns
    calls = []
    rows = run_sweep([_point("a"), _point("b")], str(tmp_path),
                     after_point=lambda p, d, r: calls.append(p.name) or {"probed": True})
    assert (tmp_path / "a" / "metrics.jsonl").stat().st_mtime_ns == first
    assert calls == ["a", "b"] and all(r["probed"] for r in rows)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_resumed_sweeps_eta_counts_the_training_of_points_finished_before(tmp_path, caplog):
    run_sweep([_point("a")], str(tmp_path))
    summary = tmp_path / "a" / "summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()), train_seconds=1200.0)))
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        run_sweep([_point("a"), _point("b")], str(tmp_path))
    # Point b's estimate is a's 20 minutes of training, not the instant a took to be skipped.
    assert "point 2/2 b: running, ETA 20.0 min" in caplog.text


def test_a_point_resumed_near_its_end_counts_all_of_its_training_in_the_eta(
        tmp_path, caplog, monkeypatch):
    import cnn_rnn.sweep as sweep

    real = sweep.train_and_evaluate

    def resumed_a(config, workdir):  # a's last steps ran now; its summary holds all 20 minutes
        if os.path.basename(workdir) != "a":
            return real(config, workdir)
        return {"step": 10, "params": 1, "eval": {"loss": 0.5}, "train_seconds": 1200.0}

    monkeypatch.setattr(sweep, "train_and_evaluate", resumed_a)
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        run_sweep([_point("a"), _point("b")], str(tmp_path))
    assert "point 2/2 b: running, ETA 20.0 min" in caplog.text


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_sweep_keeps_the_rows_of_points_another_process_runs_in_its_workdir(tmp_path):
    run_sweep([_point("a"), _point("b")], str(tmp_path))  # e.g. the process on the other core
    run_sweep([_point("c")], str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in saved] == ["c", "a", "b"]  # its own points first


def _write_rows(workdir: str, names: list[str], go: Any) -> None:
    from cnn_rnn.sweep import _write_results

    go.wait()  # both processes imported: they write at the same time
    points = [Point(n, None) for n in names]
    for name in names:  # only the newest row each time: a row lost to the other stays lost
        _write_results(workdir, {name: {"name": name}}, points)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_two_processes_rewriting_the_results_file_lose_no_row(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    names = [[f"{who}{i}" for i in range(200)] for who in "ab"]
    go = ctx.Barrier(2)
    workers = [ctx.Process(target=_write_rows, args=(str(tmp_path), n, go)) for n in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    saved = {r["name"] for r in json.loads((tmp_path / "results.json").read_text())}
    assert saved == set(names[0]) | set(names[1])


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_the_eta_weighs_each_point_by_its_steps_and_sequence_length(tmp_path, caplog):
    run_sweep([_point("a")], str(tmp_path))
    summary = tmp_path / "a" / "summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()), train_seconds=600.0)))
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        run_sweep([_point("a"), _point("b", steps=30), _point("c", steps=10)], str(tmp_path))
    # a: 10 steps in 10 minutes; b and c still to come: 40 steps, 40 minutes.
    assert "point 2/3 b: running, ETA 40.0 min" in caplog.text


def test_a_points_cost_counts_its_steps_and_every_position_of_an_example():
    from cnn_rnn.sweep import point_cost

    cfg = _point("a", steps=100).config
    assert point_cost(cfg, (1000, 2)) == 10 * point_cost(cfg, (100, 2))  # T, channels
    assert point_cost(cfg, (28, 28, 1)) == point_cost(cfg, (784, 1))  # pixels, either view
    assert point_cost(_point("b", steps=300).config, (40, 1)) == 3 * point_cost(cfg, (40, 1))


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_resumed_sweep_keeps_the_rows_of_points_it_has_not_reached_yet(tmp_path):
    run_sweep([_point("a"), _point("b")], str(tmp_path))

    def interrupted_at_b(point, pdir, row):  # a later session, stopped after rewriting a's row
        if point.name == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep([_point("a"), _point("b")], str(tmp_path), after_point=interrupted_at_b)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in saved] == ["a", "b"]


def test_a_bad_point_fails_before_any_point_runs(tmp_path):
    with pytest.raises(ConfigError, match="point b: model"):
        run_sweep([_point("a"), _point("b", nope=1)], str(tmp_path))
    assert not os.path.exists(tmp_path / "a")


def test_duplicate_point_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="used twice"):
        run_sweep([_point("a"), _point("a")], str(tmp_path))


def _bad_transformer(name):
    # Builds fine; fails only when initialised on MNIST-1D's 40 steps (> max_len).
    c = _point(name).config
    c.model = dict(name="transformer", d_model=8, num_heads=2, num_layers=1, mlp_dim=8,
                   max_len=16)
    return Point(name, c, {})


def _bad_data(name):
    point = _point(name)
    point.config.data.num_samples = 3
    return point


@pytest.mark.parametrize("bad,field", [(_bad_data, "point c: data.num_samples"),
                                       (_bad_transformer, "point c: model: 'transformer'")])
def test_a_bad_value_in_a_later_point_fails_before_any_point_trains(tmp_path, bad, field):
    workdir = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=field):
        run_sweep([_point("a"), _point("b"), bad("c")], str(workdir))
    assert not workdir.exists()


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_changed_config_is_refused_not_reported_stale(tmp_path):
    run_sweep([_point("a"), _point("b")], str(tmp_path))
    results = (tmp_path / "results.json").read_text()
    changed = _point("b")
    changed.config.optimizer.learning_rate = 0.5
    changed.config.model.hidden = 12
    with pytest.raises(ConfigError, match="^point b: workdir") as e:
        run_sweep([_point("a"), changed], str(tmp_path))
    message = str(e.value)
    assert "(model.hidden: 8 -> 12; optimizer.learning_rate: 0.01 -> 0.5)" in message
    assert (tmp_path / "results.json").read_text() == results  # nothing rewritten


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_length_and_logging_changes_resume_the_same_points(tmp_path, caplog):
    run_sweep([_point("a")], str(tmp_path))
    longer = _point("a", steps=20)
    longer.config.progress = True
    longer.config.eval_every = longer.config.checkpoint_every = 20
    longer.config.log_every = 5
    longer.config.keep_checkpoints = 5
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        rows = run_sweep([longer], str(tmp_path))
    assert rows[0]["step"] == 20
    assert "resuming from checkpoint at step 10" in caplog.text


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_diverging_point_is_named(tmp_path):
    bad = _point("b")
    bad.config.optimizer.update(name="sgd", learning_rate=1e30, momentum=0.0)
    with pytest.raises(NonFiniteError, match=r"^point b: step \d+: non-finite"):
        run_sweep([_point("a"), bad], str(tmp_path))
    assert [r["name"] for r in json.loads((tmp_path / "results.json").read_text())] == ["a"]


def test_an_unwritable_workdir_fails_before_any_point_trains(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="^workdir: cannot create"):
        run_sweep([_point("a")], str(blocker / "sweep"))


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_record_keeps_finished_points_without_checkpoints_and_a_new_workdir_skips_them(
        tmp_path, monkeypatch):
    import cnn_rnn.sweep as sweep

    record = tmp_path / "record"
    first = run_sweep([_point("a"), _point("b")], str(tmp_path / "w1"), record=str(record))
    assert (tmp_path / "w1" / "a" / "checkpoints").is_dir()
    assert sorted(os.listdir(record / "a")) == ["config.json", "metrics.jsonl", "summary.json"]

    def never(config, workdir):  # the machine that ran it is gone: nothing may train again
        raise AssertionError(f"retrained {workdir}")

    monkeypatch.setattr(sweep, "train_and_evaluate", never)
    again = run_sweep([_point("a"), _point("b")], str(tmp_path / "w2"), record=str(record))
    assert again == first
    saved = json.loads((record / "results.json").read_text())
    assert [r["name"] for r in saved] == ["a", "b"]


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_records_results_keep_the_rows_of_every_process_that_wrote_to_it(tmp_path):
    record = str(tmp_path / "record")
    run_sweep([_point("a")], str(tmp_path / "w1"), record=record)  # e.g. one per core,
    run_sweep([_point("b")], str(tmp_path / "w2"), record=record)  # or one per session
    saved = json.loads((tmp_path / "record" / "results.json").read_text())
    assert [r["name"] for r in saved] == ["a", "b"]  # in the order written: no churn in git


def test_a_record_of_another_config_is_refused_before_anything_is_restored(tmp_path):
    record = str(tmp_path / "record")
    run_sweep([_point("a")], str(tmp_path / "w1"), record=record)
    changed = _point("a")
    changed.config.model.hidden = 12
    with pytest.raises(ConfigError, match=r"^point a: --record .*record/a: holds a run of "
                       r"another config \(model.hidden: 8 -> 12\); use another --record"):
        run_sweep([changed], str(tmp_path / "w2"), record=record)
    assert not (tmp_path / "w2").exists()


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_recorded_point_whose_budget_grew_is_not_restored_but_runs(tmp_path, caplog):
    record = str(tmp_path / "record")
    run_sweep([_point("a", steps=10)], str(tmp_path / "w1"), record=record)
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        rows = run_sweep([_point("a", steps=20)], str(tmp_path / "w2"), record=record)
    assert rows[0]["step"] == 20 and "restored" not in caplog.text
    assert json.loads((tmp_path / "record" / "a" / "summary.json").read_text())["step"] == 20


def test_a_record_that_cannot_be_created_fails_before_the_workdir_is(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="^--record: cannot create"):
        run_sweep([_point("a")], str(tmp_path / "w"), record=str(blocker / "record"))
    assert not (tmp_path / "w").exists()


def test_a_restored_point_whose_hook_settings_changed_is_refused_not_half_redone(tmp_path):
    from cnn_rnn.sweep_record import check_cache_usable

    point = tmp_path / "p"
    point.mkdir()
    cached = {"settings": {"batch_size": 32}, "steps": {"0": {}, "500": {}}}
    check_cache_usable(str(point), "--config.probe", cached, {"batch_size": 32})  # the same
    with pytest.raises(ConfigError, match=r"^--config.probe: point p was run with "
                       r"\{'batch_size': 32\} and has no checkpoints to redo it with"):
        check_cache_usable(str(point), "--config.probe", cached, {"batch_size": 8})
    (point / "checkpoints").mkdir()  # in its own workdir: the hook redoes it
    check_cache_usable(str(point), "--config.probe", cached, {"batch_size": 8})


def test_a_copy_to_or_from_a_record_that_fails_half_way_leaves_no_finished_point(tmp_path):
    import shutil

    from cnn_rnn import sweep_record

    point = tmp_path / "w" / "p"
    (point / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "summary.json", "probe.json"):
        (point / name).write_text("{}")
    os.mkfifo(point / "pipe")  # copytree copies the rest, then fails on it
    record = tmp_path / "record"
    record.mkdir()
    with pytest.raises(shutil.Error):
        sweep_record.save_point(str(tmp_path / "w"), str(record), "p")
    assert os.listdir(record) == []  # neither half a point nor its temporary
    # Restoring such a folder: everything copied but the summary, so it still reads unfinished.
    shutil.copytree(point, record / "p", ignore=shutil.ignore_patterns("pipe"))
    os.mkfifo(record / "p" / "pipe")
    with pytest.raises(shutil.Error):
        sweep_record.restore(str(record), str(tmp_path / "w2"), ["p"])
    assert (tmp_path / "w2" / "p" / "probe.json").exists()
    assert not (tmp_path / "w2" / "p" / "summary.json").exists()
    os.remove(point / "pipe")
    sweep_record.save_point(str(tmp_path / "w"), str(record), "p")  # replaces the old copy
    assert sorted(os.listdir(record / "p")) == ["config.json", "probe.json", "summary.json"]
    assert sorted(os.listdir(record)) == ["p"]  # the replaced copy and the temporary gone
