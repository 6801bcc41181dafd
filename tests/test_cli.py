"""The entry points as a user meets them: bad input, in real processes and in this one."""

from types import SimpleNamespace

import pytest
from config_helpers import run_in_process

CNN = "--config=configs/mnist1d_cnn.py"
TINY = ["--config.model.features=(8, 16)", "--config.model.hidden=16", "--config.progress=False"]


def _error_line(proc):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


BAD_INPUTS = [
    ("unknown model", [CNN, "--config.model.name=nope"], "model.name"),
    ("bad model value", [CNN, "--config.model.head=max"], "model"),
    ("bad data value", [CNN, "--config.data.num_samples=3"], "data.num_samples"),
    ("unknown schedule", [CNN, "--config.optimizer.schedule=exponential"], "optimizer.schedule"),
    ("negative learning rate", [CNN, "--config.optimizer.learning_rate=-1.0"],
     "optimizer.learning_rate"),
    ("negative clip norm", [CNN, "--config.optimizer.grad_clip_norm=-1.0"],
     "optimizer.grad_clip_norm"),
    ("unknown nonfinite policy", [CNN, "--config.on_nonfinite=ignore"], "on_nonfinite"),
    ("keep_checkpoints < 1", [CNN, "--config.keep_checkpoints=0"], "keep_checkpoints"),
    ("eval_every < 1", [CNN, "--config.eval_every=0"], "eval_every"),
    ("log_every < 1", [CNN, "--config.log_every=0"], "log_every"),
    ("negative seed", [CNN, "--config.seed=-1"], "seed"),
    ("unknown config argument", ["--config=configs/mnist1d_cnn.py:foo=1"], "foo"),
    ("unknown nested key", [CNN, "--config.model.nope=1"], "model.nope"),
    ("unknown flag", [CNN, "--nope=1"], "nope"),
    ("missing config flag", [], "--config"),
    ("extra positional argument", [CNN, "extra"], "extra"),
    ("unknown data", [CNN, "--config.data.name=nope"], "data.name"),
    ("missing config file", ["--config=configs/does_not_exist.py"], "does_not_exist"),
    ("unknown config key", [CNN, "--config.nope=1"], "nope"),
    ("wrong value type", [CNN, "--config.steps=many"], "steps"),
    ("steps < 1", [CNN, "--config.steps=0"], "steps"),
    ("batch_size < 1", [CNN, "--config.batch_size=0"], "batch_size"),
    ("batch not divisible", [CNN, "--config.batch_size=12"], "batch_size"),
    ("bad config argument type", ["--config=configs/mnist1d_cnn.py:steps=x"], "steps"),
    ("bad optimizer", [CNN, "--config.optimizer.name=adagrad"], "optimizer.name"),
]


@pytest.mark.parametrize("args,field", [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(never_train, capsys, tmp_path, args, field):
    """In this process, through the entry point's own parse-and-run path (a process each cost
    most of the suite's time: each imports JAX); the three below run as real processes."""
    from experiments import run

    workdir = tmp_path / "run"
    code, err = run_in_process(run.main, [*args, f"--workdir={workdir}"], capsys)
    assert field in _error_line(SimpleNamespace(returncode=code, stderr=err, stdout=""))
    assert not workdir.exists()


@pytest.mark.parametrize("name", ["unknown model", "missing config flag", "unknown flag"])
def test_bad_input_in_a_real_process_is_one_line_exit_2(cli, tmp_path, name):
    args, field = next(b[1:] for b in BAD_INPUTS if b[0] == name)
    workdir = tmp_path / "run"
    proc = cli("experiments.run", *args, f"--workdir={workdir}", timeout=120)
    assert field in _error_line(proc) and proc.returncode == 2
    assert not workdir.exists()


# A sweep config for the sweep entry point: one tiny MNIST-1D CNN per learning rate (SGD).
SWEEP_CONFIG = """
import ml_collections

from cnn_rnn.sweep import Point
from configs.common import base_config


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.lrs = (0.01,)
    return c


def get_points(c):
    points = []
    for i, lr in enumerate(c.lrs):
        cfg = base_config(model=dict(name="cnn1d", features=(4,), hidden=8),
                          data=dict(name="mnist1d"), steps=4, batch_size=32, learning_rate=lr,
                          optimizer="sgd")
        cfg.optimizer.momentum = 0.0
        cfg.progress = False
        points.append(Point(f"p{i}", cfg, dict(lr=lr)))
    return points
"""
SWEEP = "--config=SWEEP"  # replaced by the path of SWEEP_CONFIG written for the test
ABLATE = "--config=configs/ablations/vanishing_gradients.py:smoke"


def _args(tmp_path, args):
    path = tmp_path / "sweep_config.py"
    path.write_text(SWEEP_CONFIG)
    return [a.replace("SWEEP", str(path)).replace("RUNDIR", str(tmp_path / "run")) for a in args]


ENTRY_POINT_BAD_INPUTS = [
    ("probe threshold 0", "experiments.ablate", [ABLATE, "--config.probe.threshold=0"],
     "--config.probe.threshold: must be a number in (0, 1]"),
    ("probe threshold above 1", "experiments.ablate", [ABLATE, "--config.probe.threshold=1.5"],
     "--config.probe.threshold: must be a number in (0, 1]"),
    ("probe batch_size 0", "experiments.ablate", [ABLATE, "--config.probe.batch_size=0"],
     "--config.probe.batch_size: must be an integer >= 1"),
    ("probe num_probes negative", "experiments.ablate", [ABLATE, "--config.probe.num_probes=-1"],
     "--config.probe.num_probes: must be an integer >= 0"),
    ("probe checkpoints 0", "experiments.ablate", [ABLATE, "--config.probe.checkpoints=0"],
     "--config.probe.checkpoints: must be an integer >= 1"),
    ("report of a run not started", "experiments.ablate", [ABLATE, "--report_only"],
     "--workdir: no point of this sweep has finished"),
    ("bad value in the third point", "experiments.sweep", [SWEEP, "--config.lrs=(0.01,0.01,-1.0)"],
     "point p2: optimizer.learning_rate: must be > 0"),
    ("sweep missing config", "experiments.sweep", [], "--config: required"),
    ("sweep report of a run not started", "experiments.sweep", [SWEEP, "--report_only"],
     "--workdir: no point of this sweep has finished"),
    ("record that is the workdir", "experiments.sweep", [SWEEP, "--record=RUNDIR"],
     "is the --workdir or a folder in it or around it; accepted: a local folder apart"),
    ("record inside the workdir", "experiments.ablate", [ABLATE, "--record=RUNDIR/record"],
     "is the --workdir or a folder in it or around it"),
    ("record in a bucket", "experiments.ablate", [ABLATE, "--record=gs://bucket/record"],
     "--record: gs://bucket/record is a bucket"),
    ("report from an empty record", "experiments.ablate",
     [ABLATE, "--report_only", "--record=RUNDIR-record"],
     "--record: no point of this sweep has finished"),
]


@pytest.mark.slow  # fast-suite time: docs/tests.md
@pytest.mark.parametrize("module,args,message", [b[1:] for b in ENTRY_POINT_BAD_INPUTS],
                         ids=[b[0] for b in ENTRY_POINT_BAD_INPUTS])
def test_bad_input_to_other_entry_points_is_one_line_and_writes_nothing(cli, tmp_path, module,
                                                                        args, message):
    workdir = tmp_path / "run"
    proc = cli(module, *_args(tmp_path, args), f"--workdir={workdir}", devices=1, timeout=180)
    assert message in _error_line(proc)
    assert not workdir.exists()


@pytest.mark.parametrize("module,args", [
    ("experiments.run", [CNN, *TINY, "--config.steps=2"]),
    # One process each: the others run with -m slow (fast-suite time, docs/tests.md).
    pytest.param("experiments.sweep", [SWEEP], marks=pytest.mark.slow),
    pytest.param("experiments.ablate", [ABLATE], marks=pytest.mark.slow),
    pytest.param("experiments.benchmark", ["--config=configs/benchmarks/recurrent_cpu.py:target"],
                 marks=pytest.mark.slow),
    pytest.param("experiments.demo", ["--steps=2"], marks=pytest.mark.slow),
])
def test_workdir_that_cannot_be_created(cli, tmp_path, module, args):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli(module, *_args(tmp_path, args), f"--workdir={blocker}/run", devices=1,
               timeout=180)
    assert _error_line(proc).startswith("error: workdir: cannot create")
    assert proc.returncode == 2 and "[1/" not in proc.stdout  # nothing was trained or timed


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_diverging_sweep_point_is_one_line_naming_it(cli, tmp_path):
    proc = cli("experiments.sweep", *_args(tmp_path, [SWEEP, "--config.lrs=(0.01,1e30)"]),
               f"--workdir={tmp_path / 'sweep'}", devices=1, timeout=300)
    assert proc.returncode == 3
    assert _error_line(proc).startswith("error: point p1: step ")
    assert "non-finite" in proc.stderr
    # The report of what finished (p0), while the sweep is stopped: nothing trains.
    report = cli("experiments.sweep", *_args(tmp_path, [SWEEP, "--config.lrs=(0.01,1e30)"]),
                 f"--workdir={tmp_path / 'sweep'}", "--report_only", devices=1, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "sweep" / "report.md").read_text()
    assert "| p0 |" in table and "| p1 |" not in table and "point 2/" not in report.stderr


@pytest.mark.slow  # three sweep processes: about 45 s of CPU
def test_a_sweeps_record_resumes_it_and_reports_it_from_new_workdirs(cli, tmp_path):
    args = _args(tmp_path, [SWEEP, "--config.lrs=(0.01,0.02)", f"--record={tmp_path / 'rec'}"])
    first = cli("experiments.sweep", *args, f"--workdir={tmp_path / 'w1'}", devices=1,
                timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    # The first workdir is lost; a new one continues from the record without training.
    again = cli("experiments.sweep", *args, f"--workdir={tmp_path / 'w2'}", devices=1,
                timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "restored 2 finished point(s)" in again.stderr
    assert again.stderr.count("finished earlier, skipped") == 2
    report = cli("experiments.sweep", *args, f"--workdir={tmp_path / 'w3'}", "--report_only",
                 devices=1, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "w3" / "report.md").read_text()
    assert "\n| p0 | 0.01 |" in table and "\n| p1 | 0.02 |" in table
    assert not (tmp_path / "w3" / "p0" / "checkpoints").exists()  # nothing trained


@pytest.mark.slow  # two models trained in a subprocess: about 15 s
def test_demo_trains_both_models_and_compares_them(cli, tmp_path):
    proc = cli("experiments.demo", f"--workdir={tmp_path}", "--steps=10", devices=2, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| cnn1d |" in proc.stdout and "| gru |" in proc.stdout
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    assert {p.name for p in tmp_path.iterdir()} >= {"cnn", "gru", "results.json"}


def test_list_says_which_argument_a_config_file_needs():
    from experiments.config_catalog import describe

    text = describe("configs")
    block = text.split("configs/arrays.py", 1)[1].split("\nconfigs/", 1)[0]
    assert "needs an argument, e.g. --config=configs/arrays.py:path=my.npz" in block
    assert "fails" not in text and "cannot be loaded" not in text


def test_log_lines_are_plain_unless_verbosity_is_asked_for():
    import logging

    from absl import logging as absl_logging

    from experiments import cli

    handler = absl_logging.get_absl_handler()
    saved = handler.python_handler.formatter
    try:
        cli._quiet_logging()
        record = logging.LogRecord("cnn_rnn.training.loop", logging.INFO, "loop.py", 1,
                                   "step %d: eval loss=%.3g", (5, 0.25), None)
        assert handler.format(record) == "step 5: eval loss=0.25"
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        assert handler.format(record) == "warning: step 5: eval loss=0.25"
    finally:
        handler.setFormatter(saved)
