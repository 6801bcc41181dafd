"""Generated bad inputs by class (issue 28), across the entry points: each is one `error:` line.

Classes, as the issue names them:
  silently_wrong  values the run would change or that mean nothing: labels beyond int32, inputs
                  beyond float32, empty axes in an .npz, a non-positive parameter budget.
  traceback       inputs that used to end in a traceback: a .npy with zero columns, numpy
                  headers that claim more bytes than the file holds, another entry point's
                  config, parts of the workdir of the wrong kind.
  misleading      a folder given as a file, a header-only or empty CSV, a workdir that is a file.
And what must work but was refused: an Excel "CSV UTF-8" file (a byte-order mark).

Data cases run through `experiments.run` in this process (its own parse-and-run path), config
kinds through every entry point's check on every config file in configs/, and a few in real
processes. The counts per class are printed (docs/reliability_inputs.md quotes them).
"""

import io
import itertools
import os
import zipfile

import numpy as np
import pytest

from experiments import config_file, config_kind
from tests.test_bad_inputs import _assert_one_error_line, _run_in_process

RNG = np.random.default_rng(0)
INT32_MAX = 2**31 - 1


def _npz(path, **arrays):
    d = dict(x_train=RNG.normal(size=(40, 6, 2)).astype(np.float32), y_train=np.arange(40) % 3,
             x_test=RNG.normal(size=(12, 6, 2)).astype(np.float32), y_test=np.arange(12) % 3)
    d.update(arrays)
    np.savez(path, **d)
    return path


def _lying_header(shape):
    """An .npy of a 2x2 float32 array whose header claims `shape`."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 2), np.float32))
    return buf.getvalue().replace(b"(2, 2)", repr(tuple(shape)).encode())


def _lying_npz(path, member, shape):
    with zipfile.ZipFile(path, "w") as z:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            buf = io.BytesIO()
            np.save(buf, np.zeros((4, 3), np.float32) if key.startswith("x") else np.zeros(4, int))
            z.writestr(key + ".npy", _lying_header(shape) if key == member else buf.getvalue())
    return path


def _arrays(path, model="gru"):
    return [f"--config=configs/arrays.py:path={path},model={model},steps=2,batch_size=8"]


def _series(path, columns=""):
    cols = f",columns={columns}" if columns else ""
    return [f"--config=configs/forecast.py:series={path}{cols},steps=2"]


def data_cases(tmp):
    """(class, argv of experiments.run without --workdir, text the error line must contain)."""
    out = []
    for label in (2**31, 2**32, 2**40, 2**63 - 1):  # each a different wrap after an int32 cast
        out.append(("silently_wrong", _arrays(_npz(tmp / f"label{label}.npz", y_train=np.full(
            40, label, np.int64))), "out of range"))
    out.append(("silently_wrong", _arrays(_npz(tmp / "label_u64.npz", y_test=np.full(
        12, np.iinfo(np.uint64).max, np.uint64))), "out of range"))
    for name, big in (("x", "x_train"), ("xt", "x_test")):
        out.append(("silently_wrong", _arrays(_npz(tmp / f"f64_{name}.npz", **{
            big: np.full((40 if big == "x_train" else 12, 6, 2), 1e300)})), "beyond float32"))
    for axis, shape in ((1, (6, 0)), (2, (0, 2))):  # zero features per step; zero steps
        out.append(("silently_wrong", _arrays(_npz(
            tmp / f"empty{axis}.npz", x_train=np.zeros((40, *shape), np.float32),
            x_test=np.zeros((12, *shape), np.float32))), "zero"))
    for budget in (-5, 0, -70000):
        out.append(("silently_wrong", [f"--config=configs/seq2seq.py:budget={budget}"],
                    "budget"))
    np.save(tmp / "series.npy", np.full((200, 1), 1e300))
    out.append(("silently_wrong", _series(tmp / "series.npy"), "beyond float32"))

    for n, shape in enumerate(((100, 0), (0,), (0, 3))):
        np.save(tmp / f"cols{n}.npy", np.zeros(shape))
        out.append(("traceback", _series(tmp / f"cols{n}.npy"), "zero"))
    for member, shape in itertools.product(("x_train", "y_test"),
                                           ((5_000_000, 4_000_000), (2**40,), (3, 2**45))):
        path = _lying_npz(tmp / f"huge_{member}_{len(shape)}_{shape[-1]}.npz", member, shape)
        out.append(("traceback", _arrays(path), "header claims"))
    for n, shape in enumerate(((5_000_000, 4_000_000), (2**50,))):
        (tmp / f"huge{n}.npy").write_bytes(_lying_header(shape))
        out.append(("traceback", _series(tmp / f"huge{n}.npy"), "header claims"))

    for n, name in enumerate(("data.npz", "data.csv", "data.npy")):
        (tmp / f"dir{n}" / name).mkdir(parents=True)
        argv = _arrays(tmp / f"dir{n}" / name) if name.endswith("npz") else _series(
            tmp / f"dir{n}" / name)
        out.append(("misleading", argv, "is a directory, not a file"))
    (tmp / "folder.py").mkdir()
    out.append(("misleading", [f"--config={tmp}/folder.py"], "is a directory, not a config"))
    (tmp / "header_only.csv").write_text("value,other\n")
    out.append(("misleading", _series(tmp / "header_only.csv", "value"), "but no data rows"))
    (tmp / "blank.csv").write_text("\n\n")
    out.append(("misleading", _series(tmp / "blank.csv", "value"), "holds no rows"))
    (tmp / "empty.npz").write_bytes(b"")
    out.append(("misleading", _arrays(tmp / "empty.npz"), "is empty"))
    return out


@pytest.fixture(autouse=True)
def _never_train(monkeypatch):
    """An input the checks let through would start training: stop it as a visible failure."""
    from cnn_rnn.errors import ConfigError
    from cnn_rnn.training import loop

    def accepted(workdir):
        raise ConfigError("ACCEPTED", "the checks let this input through")

    monkeypatch.setattr(loop, "prepare_workdir", accepted)


def test_generated_data_inputs_by_class(tmp_path, capsys):
    cases = data_cases(tmp_path)
    failures, counts = [], {}
    for i, (kind, argv, text) in enumerate(cases):
        workdir = tmp_path / f"w{i}"
        code, err = _run_in_process(argv, workdir, capsys)
        try:
            line = _assert_one_error_line(code, err, workdir, text)
            assert "ACCEPTED" not in line, line
            counts[kind] = counts.get(kind, 0) + 1
        except AssertionError as e:
            failures.append(f"{kind} {argv}: {str(e).splitlines()[0]}")
    with capsys.disabled():
        print(f"\ndata inputs by class, one clean error line each: {counts} of {len(cases)}")
    assert failures == []
    assert counts == {"silently_wrong": 13, "traceback": 11, "misleading": 7}


def test_excel_csv_with_a_byte_order_mark_selects_its_first_column(tmp_path, capsys):
    path = tmp_path / "excel.csv"
    values = np.sin(np.arange(300) / 7.0)
    path.write_text("level,other\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)),
                    encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    code, err = _run_in_process(_series(path, "level"), tmp_path / "w", capsys)
    assert "ACCEPTED" in err  # the file passed every check and reached the workdir
    from cnn_rnn.data.timeseries import read_series

    np.testing.assert_allclose(read_series(str(path), ("level",))[:, 0], values, rtol=1e-12)


def _config_files():
    """Every config file with a get_config() under configs/, loaded with its default argument."""
    out = []
    for root, _, files in os.walk("configs"):
        for name in sorted(files):
            path = os.path.join(root, name)
            if not name.endswith(".py") or name in ("__init__.py", "common.py", "presets.py"):
                continue
            module = config_file.load_module(path)
            if not callable(getattr(module, "get_config", None)):
                continue
            try:
                config = module.get_config()
            except ValueError:  # a required argument, e.g. arrays.py:path=...
                continue
            out.append((path, module, config))
    return out


def test_every_entry_point_refuses_every_other_kind_of_config():
    files = _config_files()
    tried = refused = 0
    kinds = {}
    for (path, module, config), command in itertools.product(files, config_kind.BY_COMMAND):
        found = config_kind.kind_of(config, callable(getattr(module, "get_points", None)))
        assert found is not None, f"{path}: no kind recognised"
        kinds[found.name] = kinds.get(found.name, 0) + 1
        tried += 1
        if found.command == command:
            config_kind.check_kind(config, module, path, command)  # accepted
            continue
        with pytest.raises(ValueError, match=rf"^--config: {path} is {found.name} config, not "
                           rf".*python -m {found.command}"):
            config_kind.check_kind(config, module, path, command)
        refused += 1
    print(f"config kinds: {kinds}; {refused} of {tried} (file, entry point) pairs refused")
    assert len(kinds) == len(config_kind.KINDS) and refused > 100


@pytest.mark.parametrize("module,config,text", [
    ("experiments.benchmark", "configs/sweeps/results_cpu.py",
     "is a sweep config, not a benchmark config; run it with python -m experiments.sweep"),
    ("experiments.parallel_in_time", "configs/mnist1d_cnn.py",
     "is a run config, not a parallel-in-time config; run it with python -m experiments.run"),
])
def test_another_entry_points_config_in_a_real_process(cli, tmp_path, module, config, text):
    workdir = tmp_path / "w"
    proc = cli(module, f"--config={config}", f"--workdir={workdir}", devices=1, timeout=180)
    _assert_one_error_line(proc.returncode, proc.stderr, workdir, text)


def workdir_cases(tmp):
    """(class, workdir, text): workdirs whose parts have the wrong kind, made before the run."""
    out = []
    for name in ("checkpoints", "tensorboard"):
        (tmp / f"file_{name}").mkdir()
        (tmp / f"file_{name}" / name).write_text("not a folder")
        out.append(("traceback", tmp / f"file_{name}", f"{name} folder but is a file"))
    for name in ("config.json", "metrics.jsonl", "summary.json", ".lock"):
        (tmp / f"dir_{name}" / name).mkdir(parents=True)
        out.append(("traceback", tmp / f"dir_{name}", f"{name} file but is a directory"))
    (tmp / "plain_file").write_text("a file, not a workdir")
    out.append(("misleading", tmp / "plain_file", "is a file, not a directory"))
    return out


def test_workdirs_of_the_wrong_kind(tmp_path, capsys, monkeypatch):
    from cnn_rnn.training import loop, run_record

    monkeypatch.setattr(loop, "prepare_workdir", run_record.prepare_workdir)  # the real one
    cases = workdir_cases(tmp_path)
    counts = {}
    for kind, workdir, text in cases:
        before = sorted(p.name for p in workdir.iterdir()) if workdir.is_dir() else None
        code, err = _run_in_process(["--config=configs/mnist1d_cnn.py", "--config.steps=2"],
                                    workdir, capsys)
        assert code == 2 and "Traceback" not in err, err
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and text in errors[0], err
        after = sorted(p.name for p in workdir.iterdir()) if workdir.is_dir() else None
        assert after == before  # nothing written
        counts[kind] = counts.get(kind, 0) + 1
    with capsys.disabled():
        print(f"\nworkdirs of the wrong kind, one clean error line each: {counts}")
    assert counts == {"traceback": 6, "misleading": 1}
