"""The runner as a user meets it: real subprocesses given bad input."""


import pytest

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
    ("unknown schedule", [CNN, "--config.optimizer.schedule=step"], "optimizer.schedule"),
    ("negative learning rate", [CNN, "--config.optimizer.learning_rate=-1.0"],
     "optimizer.learning_rate"),
    ("negative clip norm", [CNN, "--config.optimizer.grad_clip_norm=-1.0"],
     "optimizer.grad_clip_norm"),
    ("unknown nonfinite policy", [CNN, "--config.on_nonfinite=ignore"], "on_nonfinite"),
    ("keep_checkpoints < 1", [CNN, "--config.keep_checkpoints=0"], "keep_checkpoints"),
    ("eval_every < 1", [CNN, "--config.eval_every=0"], "eval_every"),
    ("checkpoint not a multiple of log", [CNN, "--config.log_every=7"], "checkpoint_every"),
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
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, args, field):
    workdir = tmp_path / "run"
    proc = cli("experiments.run", *args, f"--workdir={workdir}", timeout=120)
    assert field in _error_line(proc)
    assert not workdir.exists()


def test_workdir_that_cannot_be_created(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli("experiments.run", CNN, *TINY, "--config.steps=2",
               f"--workdir={blocker}/run", timeout=120)
    assert "workdir" in _error_line(proc)


def test_demo_trains_both_models_and_compares_them(cli, tmp_path):
    proc = cli("experiments.demo", f"--workdir={tmp_path}", "--steps=10", devices=2, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| cnn1d |" in proc.stdout and "| gru |" in proc.stdout
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    assert {p.name for p in tmp_path.iterdir()} >= {"cnn", "gru", "results.json"}
