"""Checkpoints corrupted on disk after they were written: same-size random byte flips in each
kind of file a checkpoint holds are caught by its checksums, the checkpoint is set aside with one
short warning, and the run resumes from the previous good one to the same end as a run that was
never corrupted."""

import logging
import os
import random
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from config_helpers import small_config

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.loop import train_and_evaluate


def _config(steps):
    return small_config(steps, batch_size=32, checkpoint_every=5, eval_every=10,
                        keep_checkpoints=10)


def _final_state(workdir, step):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=100)
    state = ckpt.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]
    ckpt.close()
    return state


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a run stopped at step 20, the same run never stopped, to step 30)."""
    base = tmp_path_factory.mktemp("integrity")
    stopped, full = base / "stopped", base / "full"
    train_and_evaluate(_config(20), str(stopped))
    train_and_evaluate(_config(30), str(full))
    return stopped, full


def _kinds(folder):
    """{kind: [files]} of a checkpoint folder; data files (hash names) form one kind."""
    kinds = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size > 0:
            rel = path.relative_to(folder)
            kind = str(rel.parent / "<data>") if rel.parent.name == "d" else str(rel)
            kinds.setdefault(kind, []).append(path)
    return kinds


def _flip(path, rng, n=16):
    """Overwrite up to `n` bytes at a random offset with different bytes (same size)."""
    data = bytearray(path.read_bytes())
    n = min(n, len(data))
    start = rng.randrange(len(data) - n + 1)
    for i in range(start, start + n):
        data[i] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def _same_end(workdir, full):
    assert (workdir / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()
    a, b = _final_state(str(workdir), 30), _final_state(str(full), 30)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _trial(runs, tmp_path, caplog, trial):
    stopped, full = runs
    workdir = tmp_path / f"trial{trial}"
    shutil.copytree(stopped, workdir)
    kinds = _kinds(workdir / "checkpoints" / "20")
    kind = sorted(kinds)[trial % len(kinds)]
    rng = random.Random(trial)
    _flip(rng.choice(kinds[kind]), rng)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train_and_evaluate(_config(30), str(workdir))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("checkpoint at step 20 is unreadable"), \
        (kind, warnings)
    assert len(warnings[0]) < 120 and "<bound" not in warnings[0], warnings[0]
    assert len(list((workdir / "unreadable_checkpoints").iterdir())) == 1
    _same_end(workdir, full)
    return kind


@pytest.mark.parametrize("trial", [0, 3])
def test_flipped_bytes_are_caught_and_the_run_resumes_from_the_previous_one(runs, tmp_path,
                                                                           caplog, trial):
    _trial(runs, tmp_path, caplog, trial)


@pytest.mark.slow
def test_twenty_corruption_trials_over_every_kind_of_file(runs, tmp_path, caplog):
    kinds = [_trial(runs, tmp_path, caplog, t) for t in range(20)]
    print(f"corruption trials: 20 detected and resumed equal, over {len(set(kinds))} kinds of "
          f"file: {sorted(set(kinds))}")
    assert len(set(kinds)) == len(_kinds(runs[0] / "checkpoints" / "20"))


def test_no_intact_checkpoint_left_says_so_and_starts_over(runs, tmp_path, caplog):
    stopped, full = runs
    workdir = tmp_path / "all_bad"
    shutil.copytree(stopped, workdir)
    rng = random.Random(7)
    for step in (5, 10, 15, 20):
        data = [p for p in (workdir / "checkpoints" / str(step)).rglob("*")
                if p.is_file() and p.parent.name == "d"]
        _flip(rng.choice(data), rng)
    with caplog.at_level(logging.WARNING):
        train_and_evaluate(_config(30), str(workdir))
    assert "no intact checkpoint left" in caplog.text
    _same_end(workdir, full)


def test_steps_below_a_finished_checkpoint_is_refused_and_writes_nothing(runs, tmp_path):
    workdir = tmp_path / "shorter"
    shutil.copytree(runs[0], workdir)
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(ConfigError, match=r"^steps: 10 is below the step of this workdir's "
                                          r"newest checkpoint \(20\)"):
        train_and_evaluate(_config(10), str(workdir))
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
