"""A generated set of bad inputs to `experiments.run`: every one must end in exactly one `error:`
line, a non-zero exit, no traceback, and nothing new on disk.

The inputs are derived from the config files themselves: for every numeric field of several
configs, values out of range (negative, zero where a count or a rate must be positive, nan, inf,
too large for the 32-bit integers JAX indexes with, the wrong type); for every choice field an
unknown value; misspelt field names; broken config files. Most run in this process through the
entry point's own parse-and-run path (`cli.execute`, what `python -m experiments.run` calls), a
few as real subprocesses.
"""

import os
import random

import pytest
from config_helpers import run_in_process

from experiments import config_file
from experiments import run as run_entry

CONFIGS = ["configs/mnist1d_cnn.py", "configs/mnist1d_gru.py", "configs/mnist1d_transformer.py",
           "configs/mnist1d_tcn.py", "configs/mnist1d_lru.py", "configs/mnist1d_hybrid.py"]
# Numeric fields for which zero is a meaningful value (none, off, the first seed).
ZERO_OK = {"seed", "data.dataset_seed", "optimizer.warmup_steps", "optimizer.weight_decay",
           "optimizer.grad_clip_norm", "optimizer.momentum", "model.dropout", "model.r_min",
           "model.head_std",  # 0 = the init style's own output layer
           "eval_batch_size"}  # 0 = the default eval batch
ZERO_OK_IN = {("configs/mnist1d_cnn.py", "model.hidden")}  # 0 = no dense layer before the head
HUGE = 10**12  # beyond int32


def _fields(node, prefix=""):
    for key in node.keys():
        value = node[key]
        if hasattr(value, "keys"):
            yield from _fields(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _near_miss(name):
    """`name` with one letter dropped (a typo that is not itself a field)."""
    return name[:-2] + name[-1] if len(name) > 3 else name + "x"


def _cases_for(path):
    config = config_file.load_config(path)
    out = []
    for field, value in _fields(config):
        flag = f"--config.{field}"
        if isinstance(value, bool):
            out.append((f"{flag}=maybe", field))
        elif isinstance(value, int):
            bad = ["-1", str(HUGE), "1.5", "abc", "nan"]
            if field not in ZERO_OK and (path, field) not in ZERO_OK_IN:
                bad.append("0")
            out += [(f"{flag}={v}", field) for v in bad]
        elif isinstance(value, float):
            bad = ["nan", "inf", "-inf", "-1.0", "abc"]
            if field.endswith("dropout"):
                bad += ["1.0", "1.5"]
            if field not in ZERO_OK:
                bad.append("0.0")
            out += [(f"{flag}={v}", field) for v in bad]
        elif isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
            out += [(f"{flag}=({value[0]}, -1)", field), (f"{flag}=(0,)", field),
                    (f"{flag}=({value[0]}, 1.5)", field)]
        elif isinstance(value, str) and field != "on_nonfinite" or field.endswith("name"):
            out.append((f"{flag}=no_such_choice", field))
        if isinstance(value, int | float | str) and "." in field:
            typo = f"{field.rsplit('.', 1)[0]}.{_near_miss(field.rsplit('.', 1)[1])}"
            out.append((f"--config.{typo}=1", f"--config.{typo}: no such field"))
    out.append((f"--config.{_near_miss('steps')}=10", f"--config.{_near_miss('steps')}: no such "
                "field"))
    out.append(("--config.seed=4294967296", "seed"))  # JAX keeps 32 bits: would alias seed 0
    out.append(("--config.batch_size=8192", "batch_size"))  # more than the 4000 training examples
    return [(path, arg, field) for arg, field in out]


GENERATED = [c for path in CONFIGS for c in _cases_for(path)]
# The default suite runs a fixed sample; the slow test runs all of them.
SAMPLE = random.Random(0).sample(GENERATED, 40)


def _broken_files(tmp_path):
    """(argv without --workdir, text the error must contain) for config files that are wrong."""
    files = {
        "syntax.py": "def get_config(:\n",
        "raises.py": "def get_config():\n    raise RuntimeError('boom')\n",
        "no_get_config.py": "X = 1\n",
        "returns_none.py": "def get_config():\n    return None\n",
        "bad_import.py": "import no_such_module_xyz\n",
        "notes.txt": "just text\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "folder.py").mkdir()
    return [
        ([f"--config={tmp_path}/syntax.py"], "syntax error"),
        ([f"--config={tmp_path}/raises.py"], "RuntimeError: boom"),
        ([f"--config={tmp_path}/no_get_config.py"], "defines no get_config"),
        ([f"--config={tmp_path}/returns_none.py"], "returned NoneType"),
        ([f"--config={tmp_path}/bad_import.py"], "no_such_module_xyz"),
        ([f"--config={tmp_path}/notes.txt"], "not a Python config file"),
        ([f"--config={tmp_path}/folder.py"], "is a directory, not a config file"),
        ([f"--config={tmp_path}/missing.py", "--config.steps=3"], "no such file"),
        (["--config=", "--config.steps=3"], "--config"),
        (["--config.steps=3"], "--config"),
        (["--config=configs/mnist1d_cnn.py:nope=1"], "nope"),
        (["--config=configs/mnist1d_cnn.py", "stray"], "stray"),
        (["--config=configs/mnist1d_cnn.py", "--no_such_flag=1"], "no_such_flag"),
    ]


@pytest.fixture(autouse=True)
def _never_train(never_train):  # noqa: PT004 - only its effect
    """Every input here is bad: none may reach training."""


def _run_in_process(argv, workdir, capsys):
    return run_in_process(run_entry.main, [*argv, f"--workdir={workdir}"], capsys)


def _assert_one_error_line(code, err, workdir, text):
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert text in errors[0], errors[0]
    assert not os.path.exists(workdir), os.listdir(workdir)
    return errors[0]


def _check(cases, tmp_path, capsys):
    failures = []
    for i, (path, arg, field) in enumerate(cases):
        workdir = tmp_path / f"w{i}"
        code, err = _run_in_process([f"--config={path}", arg], workdir, capsys)
        try:
            # A value error names its field (its leaf, as a model's own check words it).
            line = _assert_one_error_line(code, err, workdir, field.rsplit(".", 1)[-1])
            assert "Unknown command line flag" not in line and "ACCEPTED" not in line, line
        except AssertionError as e:
            failures.append(f"{path} {arg}: {str(e).splitlines()[0]}")
    return failures


def test_generated_bad_values_sample(tmp_path, capsys):
    assert len(GENERATED) > 300
    failures = _check(SAMPLE, tmp_path, capsys)
    assert failures == [], "\n".join(failures)


@pytest.mark.slow
def test_generated_bad_values_all(tmp_path, capsys):
    failures = _check(GENERATED, tmp_path, capsys)
    print(f"generated bad inputs: {len(GENERATED)} tried, {len(GENERATED) - len(failures)} "
          "gave one error line, a non-zero exit, no traceback and no workdir")
    assert failures == [], "\n".join(failures)


def test_broken_config_files(tmp_path, capsys):
    for i, (argv, text) in enumerate(_broken_files(tmp_path)):
        workdir = tmp_path / f"w{i}"
        code, err = _run_in_process(argv, workdir, capsys)
        _assert_one_error_line(code, err, workdir, text)


@pytest.mark.slow  # fast-suite time: docs/tests.md
@pytest.mark.parametrize("argv,text", [
    (["--config=configs/mnist1d_cnn.py", "--config.seed=1180591620717411303424"], "seed"),
    (["--config=configs/mnist1d_cnn.py", "--config.model.features=(32,-1)"], "model.features"),
    (["--config=configs/mnist1d_cnn.py", "--config.model.hiden=3"],
     "--config.model.hiden: no such field; did you mean hidden?"),
    (["--config=SYNTAX"], "syntax error"),
])
def test_bad_input_in_a_real_process(cli, tmp_path, argv, text):
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    argv = [a.replace("SYNTAX", str(tmp_path / "syntax.py")) for a in argv]
    workdir = tmp_path / "run"
    proc = cli("experiments.run", *argv, f"--workdir={workdir}", devices=1, timeout=180)
    _assert_one_error_line(proc.returncode, proc.stderr, workdir, text)



def test_forecasting_protocol_bad_inputs(tmp_path, capsys):
    """Borders that do not fit, a window longer than a part, horizon 0, a missing column."""
    path = tmp_path / "ett.csv"
    cols = "HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"
    path.write_text(f"date,{cols}\n" + "".join(f"d{i}," + ",".join(
        f"{(i * (k + 3)) % 17 + 0.5 * k}" for k in range(7)) + "\n" for i in range(1000)))
    base = f"--config=configs/ltsf.py:path={path},window=24,horizon=12"
    cases = [
        (f"{base},protocol=borders,borders=600;800;5000", "data.borders"),
        (f"{base},protocol=borders,borders=800;600;1000", "data.borders"),
        (base, "data.protocol"),  # ett_hourly needs 14,400 rows
        (f"{base},protocol=borders,borders=600;700;1000,window=120", "data.window"),
        (f"{base},protocol=borders,borders=600;800;1000,horizon=0", "data.horizon"),
        (f"{base},protocol=borders,borders=600;800;1000,columns=OT;oil", "data.columns"),
    ]
    for i, (arg, field) in enumerate(cases):
        workdir = tmp_path / f"w{i}"
        code, err = _run_in_process([arg], workdir, capsys)
        line = _assert_one_error_line(code, err, workdir, f"error: {field}:")
        assert "ACCEPTED" not in line, line
