"""The long-horizon forecasting protocol: borders, z-scoring, windows, the linear forecasters
against numpy equations, the step schedule, and early stopping replayed after the fact."""

import json

import jax
import numpy as np
import pytest

from cnn_rnn.data.registry import build_data, data_fields
from cnn_rnn.data.timeseries import PROTOCOLS
from cnn_rnn.diagnostics.model_selection import KeptModelOnTest, early_stopping
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.linear_forecast import DLinear, Linear, NLinear
from cnn_rnn.training.optim import learning_rate_schedule
from configs.ltsf import ETT_COLUMNS
from configs.ltsf import get_config as ltsf_config

ETT_ROWS = 17420  # ETTh1's length; the protocol uses the first 14,400


def write_ett_like(path, rows=ETT_ROWS, seed=0):
    """A generated series shaped like ETTh1: a date column, then HUFL .. OT; column 0 (HUFL) is
    the row index, so a denormalised value tells which row it came from."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=float)
    cols = [t] + [np.sin(2 * np.pi * t / 24 + k) + 0.1 * rng.standard_normal(rows) + k
                  for k in range(1, 7)]
    with open(path, "w") as f:
        f.write("date," + ",".join(ETT_COLUMNS) + "\n")
        for i, row in enumerate(np.stack(cols, 1)):
            f.write(f"2016-07-01 {i % 24:02d}:00:00," + ",".join(f"{v:.6f}" for v in row) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def ett_csv(tmp_path_factory):
    return write_ett_like(tmp_path_factory.mktemp("ett") / "ETTh1_like.csv")


def source(path, **kw):
    return build_data(dict(name="timeseries", path=path, center="none", **kw), seed=0)


def test_ett_hourly_borders_windows_and_train_statistics(ett_csv):
    window, horizon = 336, 96
    for split, (lo, hi) in (("validation", (8640, 11520)), ("test", (11520, 14400))):
        s = source(ett_csv, columns=("HUFL",), window=window, horizon=horizon,
                   protocol="ett_hourly", eval_split=split)
        assert s.bounds == [(0, 8640), (8640, 11520), (11520, 14400)]
        rows = np.arange(8640, dtype=float)
        np.testing.assert_allclose(s.mean, rows.mean())
        np.testing.assert_allclose(s.std, rows.std())  # population std, as StandardScaler
        def row_of(v, s=s):
            return np.rint(v * s.std[0] + s.mean[0])

        # Training windows: every stride-1 window inside rows [0, 8640).
        assert len(s.train["inputs"]) == 8640 - window - horizon + 1 == 8209
        assert row_of(s.train["targets"]).max() == 8639
        # Evaluation: windows start `window` rows before the border, the first forecast is the
        # border row, the last target is the part's last row; stride 1 over the whole part.
        x, y = row_of(s.test["inputs"][:, :, 0]), row_of(s.test["targets"])
        assert len(x) == hi - lo - horizon + 1 == 2785
        np.testing.assert_array_equal(x[0], np.arange(lo - window, lo))
        np.testing.assert_array_equal(y[0], np.arange(lo, lo + horizon))
        assert y[-1, -1] == hi - 1 and np.all(np.diff(x[:, 0]) == 1)


def test_features_m_and_s_and_explicit_borders(ett_csv):
    m = source(ett_csv, columns=ETT_COLUMNS, window=24, horizon=12, protocol="borders",
               borders=(600, 800, 1000))
    assert m.spec.input_shape == (24, 7) and m.spec.num_outputs == 12 * 7
    assert len(m.test["inputs"]) == 200 - 12 + 1
    # Targets are step-major: step t+1's 7 variables, then t+2's; z-scored with train stats.
    first = m.test["targets"][0].reshape(12, 7)
    np.testing.assert_allclose(first[:, 0] * m.std[0] + m.mean[0], np.arange(600, 612), atol=1e-3)
    s = source(ett_csv, columns=("OT",), window=24, horizon=12, protocol="borders",
               borders=(600, 800, 1000))
    np.testing.assert_allclose(s.train["targets"], m.train["targets"][:, 6::7], atol=1e-6)
    assert PROTOCOLS["ett_minute"] == (34560, 46080, 57600)


@pytest.mark.parametrize("kw,field", [
    (dict(protocol="borders", borders=(600, 800, 20000)), "data.borders"),
    (dict(protocol="borders", borders=(800, 600, 1000)), "data.borders"),
    (dict(protocol="borders", borders=(600, 800)), "data.borders"),
    (dict(protocol="borders"), "data.borders"),
    (dict(borders=(600, 800, 1000)), "data.borders"),  # with protocol=split
    (dict(protocol="ett_hourly", borders=(600, 800, 1000)), "data.borders"),
    (dict(protocol="borders", borders=(600, 700, 1000), window=120), "data.window"),
    (dict(protocol="borders", borders=(600, 800, 1000), horizon=0), "data.horizon"),
    (dict(protocol="borders", borders=(600, 800, 1000), columns=("OT", "oil")), "data.columns"),
    (dict(protocol="nope"), "data.protocol"),
])
def test_bad_protocol_inputs_name_their_field(ett_csv, kw, field):
    kw = dict(dict(columns=("OT",), window=24, horizon=12), **kw)
    with pytest.raises(ConfigError) as info:
        source(ett_csv, **kw)
    assert info.value.field == field


def test_ett_protocol_needs_the_rows(tmp_path):
    short = write_ett_like(tmp_path / "short.csv", rows=2000)
    with pytest.raises(ConfigError, match="14400") as info:
        source(short, columns=("OT",), window=24, horizon=12, protocol="ett_hourly")
    assert info.value.field == "data.protocol"


# ---- models against numpy equations (float64) ----

def np_moving_average(x, k):
    pad = (k - 1) // 2
    xp = np.concatenate([np.repeat(x[:, :1], pad, 1), x, np.repeat(x[:, -1:], pad, 1)], 1)
    return np.stack([xp[:, i:i + k].mean(1) for i in range(x.shape[1])], 1)


def np_time_linear(x, w, b):
    """x [B, L, C]; shared w [L, H], b [H] or individual w [C, L, H], b [C, H] -> [B, H, C]."""
    if w.ndim == 2:
        return np.stack([x[:, :, c] @ w + b for c in range(x.shape[2])], 2)
    return np.stack([x[:, :, c] @ w[c] + b[c] for c in range(x.shape[2])], 2)


def _apply(model, x, seed=1):
    params = model.init(jax.random.PRNGKey(seed), x)["params"]
    # Random parameters, so that the check does not rest on the initial values.
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    params = tree.unflatten([jax.random.normal(k, v.shape) for k, v in zip(keys, leaves,
                                                                           strict=True)])
    out = jax.jit(model.apply)({"params": params}, x)
    return np.asarray(out, np.float64), jax.tree_util.tree_map(lambda v: np.asarray(v, float),
                                                               params)


@pytest.mark.parametrize("individual", [False, True])
def test_linear_models_match_numpy_equations(individual):
    b, length, c, h = 3, 30, 4, 6
    x = np.random.default_rng(0).standard_normal((b, length, c)).astype(np.float32)
    x64 = x.astype(np.float64)

    out, p = _apply(Linear(h * c, individual=individual), x)
    ref = np_time_linear(x64, p["TimeLinear_0"]["kernel"], p["TimeLinear_0"]["bias"])
    np.testing.assert_allclose(out, ref.reshape(b, -1), rtol=1e-4, atol=1e-4)

    out, p = _apply(NLinear(h * c, individual=individual), x)
    last = x64[:, -1:]
    ref = np_time_linear(x64 - last, p["TimeLinear_0"]["kernel"], p["TimeLinear_0"]["bias"])
    np.testing.assert_allclose(out, (ref + last).reshape(b, -1), rtol=1e-4, atol=1e-4)

    out, p = _apply(DLinear(h * c, kernel_size=7, individual=individual), x)
    trend = np_moving_average(x64, 7)
    ref = (np_time_linear(x64 - trend, p["seasonal"]["kernel"], p["seasonal"]["bias"])
           + np_time_linear(trend, p["trend"]["kernel"], p["trend"]["bias"]))
    np.testing.assert_allclose(out, ref.reshape(b, -1), rtol=1e-4, atol=1e-4)


def test_initialisation_follows_the_reference():
    x = np.zeros((1, 336, 7), np.float32)
    p = DLinear(96 * 7).init(jax.random.PRNGKey(0), x)["params"]
    for part in ("seasonal", "trend"):
        np.testing.assert_allclose(p[part]["kernel"], 1 / 336)  # the window mean
        assert np.abs(p[part]["bias"]).max() <= 1 / np.sqrt(336)
    k = np.asarray(Linear(96 * 7).init(jax.random.PRNGKey(0), x)["params"]["TimeLinear_0"][
        "kernel"])
    assert k.shape == (336, 96) and np.abs(k).max() <= 1 / np.sqrt(336) < 1.05 * np.abs(k).max()


def test_dlinear_refuses_an_even_kernel_and_outputs_that_are_not_per_variable():
    with pytest.raises(ConfigError, match="odd"):
        DLinear(12, kernel_size=24)
    with pytest.raises(ConfigError, match="multiple"):
        Linear(10).init(jax.random.PRNGKey(0), np.zeros((1, 8, 3), np.float32))


# ---- training recipe: schedule and selection ----

def test_step_schedule_is_lradj_type1():
    epoch = 7
    cfg = ltsf_config("path=x.csv,model=dlinear")
    sched = learning_rate_schedule(dict(cfg.optimizer, decay_every=epoch, decay_begin=epoch), 70)
    for e in range(10):  # epoch e (0-based) trains at lr * 0.5 ** max(0, e - 1)
        for s in (e * epoch, e * epoch + epoch - 1):
            assert float(sched(s)) == pytest.approx(1e-4 * 0.5 ** max(0, e - 1))


def test_ltsf_config_epochs_and_recipes():
    c = ltsf_config("path=x.csv,model=dlinear,window=336,horizon=96")
    assert (c.batch_size, c.optimizer.learning_rate, c.eval_every) == (8, 1e-4, 8209 // 8)
    assert c.steps == 10 * c.eval_every and c.keep_checkpoints == 10
    c = ltsf_config("path=x.csv,model=nlinear,features=S,horizon=720")
    assert (c.batch_size, c.optimizer.learning_rate) == (32, 5e-3)
    assert c.data.columns == ("OT",) and c.eval_every == (8640 - 336 - 720 + 1) // 32
    with pytest.raises(ValueError, match="features"):
        ltsf_config("features=X")
    # Every keyword of the source is a typed config field (settable as --config.data.<field>).
    for key, keyword in data_fields("timeseries").items():
        assert c.data[key] is None or isinstance(c.data[key], keyword.kind), key


@pytest.mark.parametrize("losses,patience,expected", [
    ([0.5, 0.4, 0.3], 3, (2, 3)),
    ([0.5, 0.4, 0.45, 0.41, 0.42, 0.1], 3, (1, 5)),  # stops before the late improvement
    ([0.5, 0.5, 0.4, 0.6, 0.6], 3, (2, 5)),  # an equal loss is no improvement
    ([float("nan")] * 4, 3, (None, 3)),
])
def test_early_stopping_replays_the_reference_rule(losses, patience, expected):
    assert early_stopping(losses, patience) == expected


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_kept_model_on_test_evaluates_the_kept_checkpoint(ett_csv, tmp_path):
    """A short run under explicit borders; the hook's test MSE/MAE are the numpy equations of
    the kept checkpoint's parameters on every test window."""
    from cnn_rnn.diagnostics.ablation import PointStates
    from cnn_rnn.sweep import Point
    from cnn_rnn.training.loop import to_dict, train_and_evaluate

    cfg = ltsf_config(f"path={ett_csv},model=nlinear,window=48,horizon=12,features=S,"
                      "protocol=borders,borders=400;500;600,epochs=3,patience=1,batch_size=16")
    cfg.progress = False
    train_and_evaluate(cfg, str(tmp_path))
    sel = KeptModelOnTest()(Point("p", cfg, {}), str(tmp_path), {})["selection"]
    assert sel["epochs_run"] <= 3 and sel["kept_epoch"] >= 1
    assert json.loads((tmp_path / "test_at_best.json").read_text())["test"] == sel["test"]
    test_cfg = to_dict(cfg)
    test_cfg["data"]["eval_split"] = "test"
    with PointStates(test_cfg, str(tmp_path)) as states:
        p = states.state(sel["kept_epoch"] * cfg.eval_every).params
        x, y = states.data.test["inputs"].astype(float), states.data.test["targets"]
    assert len(x) == 100 - 12 + 1
    last = x[:, -1:]
    k = np.asarray(p["TimeLinear_0"]["kernel"], float)
    pred = np_time_linear(x - last, k, np.asarray(p["TimeLinear_0"]["bias"], float)) + last
    err = pred.reshape(len(x), -1) - y
    assert sel["test"]["loss"] == pytest.approx(np.mean(err**2), rel=1e-4)
    assert sel["test"]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)


def test_sweep_points_validate_and_the_report_says_what_has_not_run(ett_csv, tmp_path):
    from cnn_rnn.sweep import validate_points
    from configs.sweeps import ltsf as sweep

    c = sweep.get_config()
    c.path = ett_csv
    validate_points(sweep.get_points(c))
    c.horizons = (96,)
    points = sweep.get_points(c)
    assert [p.tags["arch"] for p in points][:3] == ["dlinear", "nlinear", "linear"]
    validate_points(points, build=True)
    # A finished DLinear point at horizon 96 (files as the hook and the loop write them).
    pdir = tmp_path / sweep.point_name(c, "dlinear", 96)
    pdir.mkdir()
    (pdir / "test_at_best.json").write_text(json.dumps(dict(
        steps=1, epochs_run=5, kept_epoch=2, val_losses=[0.7, 0.6, 0.65, 0.66, 0.67],
        test=dict(loss=0.38, mae=0.40))))
    (pdir / "summary.json").write_text(json.dumps(dict(params=64704, train_seconds=100.0)))
    c.report = str(tmp_path / "benchmark.md")
    sweep.write_report([], str(tmp_path), c)
    page = (tmp_path / "benchmark.md").read_text()
    assert "| dlinear | 0.3800 | 0.4000 | not run | not run |" in page
    assert "| dlinear (published) | 0.375 | 0.399 | 0.405 | 0.416 |" in page
    assert "+1.3% from the published 0.375: within 3%" in page
    assert "| gru | not run | not run |" in page
    assert "| dlinear | 96 | 64,704 | 8 | 0.0001 | 5 | 2 | 0.6000 | 100 |" in page
