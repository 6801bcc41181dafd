import os

import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data import forecast_baselines as fb
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from cnn_rnn.training.losses import loss_and_metrics
from configs.common import base_config


def write_csv(path, columns, header):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in np.stack(columns, 1):
            f.write(",".join(f"{v:.6f}" for v in row) + "\n")
    return str(path)


def source(path, **kw):
    return build_data(dict(name="timeseries", path=path, **kw), seed=0)


def test_windows_never_straddle_splits_and_stats_come_from_train(tmp_path):
    n = 400
    index = np.arange(n, dtype=float)
    path = write_csv(tmp_path / "s.csv", [index, np.sin(index)], ["t", "x"])
    for split, part in (("validation", 1), ("test", 2)):
        s = source(path, columns=("t",), window=10, horizon=3, eval_split=split, center="none")
        a, b = s.bounds[0]
        np.testing.assert_allclose(s.mean, index[a:b].mean())
        np.testing.assert_allclose(s.std, index[a:b].std())
        # Denormalised, every value a window or target holds is its own time index.
        train_vals = np.concatenate([s.train["inputs"].ravel(), s.train["targets"].ravel()])
        train_vals = train_vals * s.std[0] + s.mean[0]
        assert train_vals.max() < b - 0.5 and train_vals.min() > -0.5
        lo, hi = s.bounds[part]
        ev = np.concatenate([s.test["inputs"].ravel(), s.test["targets"].ravel()])
        ev = ev * s.std[0] + s.mean[0]
        assert ev.min() > lo - 0.5 and ev.max() < hi - 0.5
        # Every window of each part is there: part length - window - horizon + 1.
        assert len(s.train["inputs"]) == b - a - 13 + 1
        assert len(s.test["inputs"]) == hi - lo - 13 + 1


def test_later_parts_do_not_change_training_data(tmp_path):
    x = np.random.default_rng(0).standard_normal(300)
    y = x.copy()
    y[250:] += 100.0  # only the test part differs
    s1 = source(write_csv(tmp_path / "a.csv", [x], ["x"]), window=8)
    s2 = source(write_csv(tmp_path / "b.csv", [y], ["x"]), window=8)
    for key in ("inputs", "targets", "target_scale"):
        np.testing.assert_array_equal(s1.train[key], s2.train[key])
    assert s1.train_batch(3, 16)["inputs"].tobytes() == s2.train_batch(3, 16)["inputs"].tobytes()


def test_many_to_many_targets_are_the_next_values(tmp_path):
    x = np.random.default_rng(1).standard_normal((200, 2))
    np.save(tmp_path / "s.npy", x)
    s = source(str(tmp_path / "s.npy"), window=6, horizon=2, mode="many_to_many", center="none")
    norm = (x - s.mean) / s.std
    assert s.spec.kind == "sequence_regression" and s.spec.num_outputs == 4
    m, t = 5, 3  # window m, step t: targets are steps m+t+1, m+t+2, step-major
    np.testing.assert_allclose(s.train["targets"][m, t], norm[m + t + 1:m + t + 3].ravel(),
                               rtol=1e-5)
    np.testing.assert_allclose(s.train["inputs"][m], norm[m:m + 6], rtol=1e-5)
    assert s.train["target_weights"].min() == 1.0
    assert s.test["target_weights"][:, :-1].max() == 0.0 and s.test["target_weights"][:, -1].min()


def test_centering_on_the_last_value(tmp_path):
    x = np.cumsum(np.random.default_rng(5).standard_normal(200))
    path = write_csv(tmp_path / "s.csv", [x], ["x"])
    s = source(path, window=5, horizon=2)
    raw = source(path, window=5, horizon=2, center="none")
    last = raw.train["inputs"][:, -1:, 0]
    assert np.abs(s.train["inputs"][:, -1]).max() == 0.0
    np.testing.assert_allclose(s.train["targets"], raw.train["targets"] - last, atol=1e-6)


def test_baselines_against_direct_formulas():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 12, 1))
    np.testing.assert_array_equal(fb.persistence(w, 3)[:, :, 0], np.repeat(w[:, -1], 3, 1))
    # Period 4, horizon 6: steps t+1..t+4 come from t-3..t, steps t+5, t+6 from t-3, t-2.
    expect = w[:, [8, 9, 10, 11, 8, 9], 0]
    np.testing.assert_array_equal(fb.seasonal_naive(w, 6, 4)[:, :, 0], expect)
    # A sine obeys x_{t+1} = 2cos(ω) x_t - x_{t-1}: the linear AR fit is exact.
    t = np.arange(300)
    sine = np.sin(0.3 * t)[:, None]
    from cnn_rnn.data.timeseries import windows_of

    errs = fb.all_baselines(windows_of(sine[:200], 4, 2), windows_of(sine[200:], 4, 2), 2, None)
    assert errs["linear_ar"]["mse"] < 1e-12 < errs["persistence"]["mse"]
    assert "seasonal_naive" not in errs


def test_original_unit_metrics_match_numpy():
    rng = np.random.default_rng(3)
    out, tgt = rng.standard_normal((2, 6, 3)).astype(np.float32)
    scale = np.abs(rng.standard_normal((6, 3))).astype(np.float32) + 0.5
    w = np.array([1, 1, 1, 1, 0, 0], np.float32)
    from cnn_rnn.task import TaskSpec

    spec = TaskSpec(kind="regression", num_outputs=3, input_shape=(4, 1))
    _, m = loss_and_metrics(spec, jnp.asarray(out), {"targets": jnp.asarray(tgt),
                                                     "target_scale": jnp.asarray(scale),
                                                     "weights": jnp.asarray(w)})
    d = (out - tgt)[:4]
    for key, ref in (("loss", (d**2).mean()), ("mae", np.abs(d).mean()),
                     ("mse_original", ((d * scale[:4]) ** 2).mean()),
                     ("mae_original", np.abs(d * scale[:4]).mean())):
        np.testing.assert_allclose(float(m[key][0] / m[key][1]), ref, rtol=1e-5)


@pytest.mark.parametrize("kw, field", [
    (dict(path="/no/such/file.csv"), "data.path"),
    (dict(path="series.txt"), "data.path"),
    (dict(columns=("nope",)), "data.columns"),
    (dict(columns=()), "data.columns"),  # two columns: must name one
    (dict(columns=("x",), window=390), "data.window"),
    (dict(columns=("x",), horizon=0), "data.horizon"),
    (dict(columns=("x",), window=0), "data.window"),
    (dict(columns=("x",), window=6, period=7), "data.period"),
    (dict(columns=("x",), mode="seq"), "data.mode"),
    (dict(columns=("x",), split=(0.9, 0.2)), "data.split"),
    (dict(columns=("name",)), "data.columns"),  # not numbers
])
def test_bad_values_are_one_line_config_errors(tmp_path, kw, field):
    path = tmp_path / "s.csv"
    with open(path, "w") as f:
        f.write("x,name\n" + "".join(f"{np.sin(i):.3f},a{i}\n" for i in range(400)))
    kw = {"path": str(path), **kw}
    with pytest.raises(ConfigError) as e:
        source(**kw)
    assert e.value.field == field and "\n" not in str(e.value)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_bad_path_on_the_command_line_is_one_line(cli, tmp_path):
    workdir = tmp_path / "run"
    r = cli("experiments.run", "--config=configs/forecast.py:series=/no/such.csv",
            f"--workdir={workdir}", devices=1)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: data.path: no such file")
    assert not os.path.exists(workdir)


@pytest.mark.slow  # moved from the fast suite to keep the README's test command within 10 min
def test_noisy_sine_with_trend_trains_and_beats_persistence(tmp_path):
    from cnn_rnn.training.loop import train_and_evaluate

    t = np.arange(1200)
    y = 0.01 * t + np.sin(2 * np.pi * t / 25) + 0.1 * np.random.default_rng(4).standard_normal(
        len(t))
    path = write_csv(tmp_path / "sine.csv", [y], ["value"])
    cfg = base_config(model=dict(name="gru", hidden=16),
                      data=dict(name="timeseries", path=path, window=25, horizon=5, period=25),
                      steps=100, batch_size=32, learning_rate=1e-2, optimizer="adam",
                      grad_clip_norm=1.0)
    cfg.progress = False
    summary = train_and_evaluate(cfg, str(tmp_path / "run"))
    persistence = summary["baseline"]["value"]
    assert summary["baseline"]["metric"] == "mse_original"
    assert summary["eval"]["mse_original"] < 0.5 * persistence
