"""load_run: the one way to reopen a run; corrupt checkpoints fall back, bad workdirs fail."""

import logging
import random
import shutil

import jax
import numpy as np
import pytest
from trained_runs import forecast_run

from cnn_rnn.errors import ConfigError
from cnn_rnn.training import load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return forecast_run(tmp_path_factory.mktemp("load_run"))[0]


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _flip_data_file(folder, seed=0):
    rng = random.Random(seed)
    path = rng.choice(sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_newest_checkpoint_and_a_given_step(run_dir):
    run = load_run(str(run_dir))
    assert run.step == 10 and run.config["model"]["name"] == "gru"
    assert run.spec.kind == "regression" and run.spec.input_shape == (24, 1)
    x = np.zeros((2, 24, 1), np.float32)
    assert run.apply(x).shape == (2, 6)
    older = load_run(str(run_dir), step=5)
    assert older.step == 5
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(run.variables),
                                                        _leaves(older.variables), strict=True))
    init = load_run(str(run_dir), step=0)
    assert init.step == 0


def test_corrupt_newest_falls_back_with_one_warning_and_moves_nothing(run_dir, tmp_path,
                                                                      caplog):
    workdir = tmp_path / "corrupt"
    shutil.copytree(run_dir, workdir)
    _flip_data_file(workdir / "checkpoints" / "10")
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    with caplog.at_level(logging.WARNING):
        run = load_run(str(workdir))
    assert run.step == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("checkpoint at step 10 is unreadable")
    assert "skipped" in warnings[0]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
    np.testing.assert_array_equal(_leaves(run.variables)[0],
                                  _leaves(load_run(str(run_dir), step=5).variables)[0])
    with pytest.raises(ConfigError, match=r"^step: the checkpoint at step 10 is unreadable or "
                                          r"corrupt"):
        load_run(str(workdir), step=10)


@pytest.mark.parametrize("case", ["missing", "no_config", "no_checkpoint", "bad_step",
                                  "all_corrupt"])
def test_bad_workdirs_are_one_line(run_dir, tmp_path, case):
    workdir = tmp_path / case
    step, match = None, r"^workdir: "
    if case == "no_config":
        workdir.mkdir()
        match = r"^workdir: .* holds no config.json"
    elif case in ("no_checkpoint", "bad_step", "all_corrupt"):
        shutil.copytree(run_dir, workdir)
        if case == "no_checkpoint":
            shutil.rmtree(workdir / "checkpoints")
            match = r"^workdir: .* has no finished checkpoint"
        elif case == "bad_step":
            step, match = 7, r"^step: no checkpoint at step 7 .*; accepted: 0, 5, 10$"
        else:
            for s in ("5", "10"):
                _flip_data_file(workdir / "checkpoints" / s)
            match = r"^workdir: every checkpoint in .* is unreadable or corrupt"
    with pytest.raises(ConfigError, match=match) as e:
        load_run(str(workdir), step)
    assert "\n" not in str(e.value)
