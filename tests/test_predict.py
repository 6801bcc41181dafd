"""experiments.predict: a forecast of the next horizon values with the baselines beside it, class
probabilities for a classifier, and bad inputs as one `error:` line with nothing written."""

import csv
import os

import numpy as np
import pytest
from trained_runs import HORIZON, PERIOD, WINDOW, classify_run, forecast_run, write_series

from cnn_rnn.data import forecast_baselines as fb
from cnn_rnn.errors import ConfigError
from cnn_rnn.inference import forecast
from cnn_rnn.inference import predict as p
from cnn_rnn.training import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    workdir, csv_path = forecast_run(base)
    return {"forecast": workdir, "csv": csv_path, "classify": classify_run(base)}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_forecast_of_a_written_series_with_baselines_dates_and_plot(runs, cli, tmp_path):
    history = tmp_path / "history.csv"
    values = write_series(history, n=60, seed=5)  # new data: another draw of the same process
    out = tmp_path / "out" / "forecast.csv"
    r = cli("experiments.predict", f"--workdir={runs['forecast']}", f"--input={history}",
            f"--output={out}", devices=1)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    rows = _rows(out)
    assert len(rows) == HORIZON
    assert [row["date"] for row in rows[:2]] == ["2005-01-01", "2005-02-01"]  # 60 months on
    assert set(rows[0]) == {"date", "value", "value_persistence", "value_seasonal_naive",
                            "value_linear_ar"}
    last = values[-WINDOW:, None]
    np.testing.assert_allclose([float(row["value_persistence"]) for row in rows],
                               np.repeat(values[-1], HORIZON), rtol=1e-5)
    np.testing.assert_allclose([float(row["value_seasonal_naive"]) for row in rows],
                               fb.seasonal_naive(last[None], HORIZON, PERIOD)[0, :, 0], rtol=1e-5)
    # The model's forecast, recomputed here from load_run: normalise, centre, apply, undo.
    run = load_run(str(runs["forecast"]))
    x = (last - run.data.mean) / run.data.std
    y = np.asarray(run.apply((x - x[-1:])[None].astype(np.float32)))[0]
    expected = (y + x[-1, 0]) * run.data.std[0] + run.data.mean[0]
    np.testing.assert_allclose([float(row["value"]) for row in rows], expected, rtol=1e-4)
    assert os.path.getsize(out.with_suffix(".png")) > 5000
    assert sorted(os.listdir(out.parent)) == ["forecast.csv", "forecast.png"]


def test_classification_gives_class_and_probabilities(runs, tmp_path):
    run = load_run(str(runs["classify"]))
    x = next(iter(run.data.eval_batches(16)))["inputs"][:5]
    np.savez(tmp_path / "x.npz", inputs=x)
    result = p.predict_arrays(run, str(tmp_path / "x.npz"))
    out = tmp_path / "classes.csv"
    p.write_arrays(result, str(out), lambda path: path)
    rows = _rows(out)
    assert len(rows) == 5 and list(rows[0])[:2] == ["index", "class"]
    probs = np.array([[float(r[f"p_{k}"]) for k in range(10)] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    logits = np.asarray(run.apply(x))
    assert [int(r["class"]) for r in rows] == list(logits.argmax(1))
    np.save(tmp_path / "one.npy", x[0])  # one example without the batch axis
    assert p.predict_arrays(run, str(tmp_path / "one.npy"))["classes"].shape == (1,)


def test_inputs_that_do_not_fit_name_the_input(runs, tmp_path):
    run = load_run(str(runs["forecast"]))
    short = tmp_path / "short.csv"
    write_series(short, n=WINDOW - 1)
    with pytest.raises(ConfigError, match=r"^input: .* has 23 rows, fewer than the run's window "
                                          r"of 24"):
        forecast.forecast(run, str(short))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("date,price\n2000-01-01,1\n")
    with pytest.raises(ConfigError, match=r"^input: no column 'value' in .*; accepted: date, "
                                          "price"):
        forecast.forecast(run, str(wrong))
    classify = load_run(str(runs["classify"]))
    np.save(tmp_path / "shape.npy", np.zeros((3, 7, 1), np.float32))
    with pytest.raises(ConfigError, match=r"^input: .* of shape \(3, 7, 1\); the run takes "
                                          r"inputs \[N, 40, 1\]"):
        p.predict_arrays(classify, str(tmp_path / "shape.npy"))
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ConfigError, match=r"^input: cannot read .*text\.npz"):
        p.predict_arrays(classify, str(tmp_path / "text.npz"))
    with pytest.raises(ConfigError, match=r"^input: .* is not a \.npz or \.npy file"):
        p.check_paths(classify, p.predictor_for(classify), str(short), "x.csv")


@pytest.mark.parametrize("case", [  # one process each: fast-suite time, docs/tests.md
    "no_checkpoint",
    *(pytest.param(c, marks=pytest.mark.slow) for c in ("wrong_kind", "unwritable"))])
def test_bad_input_in_a_real_process_is_one_line_and_writes_nothing(runs, cli, tmp_path, case):
    workdir, inp, out = runs["forecast"], runs["csv"], tmp_path / "o" / "f.csv"
    if case == "no_checkpoint":
        workdir = tmp_path / "empty"
        workdir.mkdir()
        (workdir / "config.json").write_text((runs["forecast"] / "config.json").read_text())
        text = "error: workdir: "
    elif case == "wrong_kind":
        inp = tmp_path / "x.npy"
        np.save(inp, np.zeros((2, 24, 1)))
        text = "error: input: "
    else:
        (tmp_path / "o").write_text("a file where the output's folder would be")
        text = "error: output: cannot write to "
    r = cli("experiments.predict", f"--workdir={workdir}", f"--input={inp}", f"--output={out}",
            devices=1)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and errors[0].startswith(text), r.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()
