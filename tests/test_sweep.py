"""Sweeps: validation before running, skipping finished points, resuming, the report."""

import json
import os

import pytest

from cnn_rnn.errors import ConfigError
from cnn_rnn.sweep import Point, markdown_table, run_sweep
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


def test_an_interrupted_sweep_resumes_without_redoing_finished_points(tmp_path):
    run_sweep([_point("a")], str(tmp_path))  # the sweep "died" after its first point
    first = (tmp_path / "a" / "metrics.jsonl").stat().st_mtime_ns
    calls = []
    rows = run_sweep([_point("a"), _point("b")], str(tmp_path),
                     after_point=lambda p, d, r: calls.append(p.name) or {"probed": True})
    assert (tmp_path / "a" / "metrics.jsonl").stat().st_mtime_ns == first
    assert calls == ["a", "b"] and all(r["probed"] for r in rows)


def test_a_bad_point_fails_before_any_point_runs(tmp_path):
    with pytest.raises(ConfigError, match="point b: model"):
        run_sweep([_point("a"), _point("b", nope=1)], str(tmp_path))
    assert not os.path.exists(tmp_path / "a")


def test_duplicate_point_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="used twice"):
        run_sweep([_point("a"), _point("a")], str(tmp_path))
