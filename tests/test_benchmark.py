"""The benchmark end to end at a tiny size, its config errors, segment remat and the cuDNN path.

No timing assertions: speed targets live in the benchmark's output as ratios.
"""

import glob
import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jax_rnn

from cnn_rnn.benchmarking import suite, timing
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn import CELLS, RNN, cudnn
from cnn_rnn.models.rnn.scan import resolve_batch_groups, resolve_remat, scan_in_segments
from cnn_rnn.task import TaskSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = {"model", "impl", "seq_len", "batch", "hidden", "step_ms", "compile_s", "peak_bytes"}

TINY_CONFIG = """
from configs.benchmarks.common import benchmark_config, model

def get_config(arg=None):
    c = benchmark_config(
        models=[model("lstm", impls=("cnn_rnn", "flax", "torch")),
                model("lstm-seg", "lstm", remat="segments"),
                model("mingru", num_layers=1)],
        seq_lens=(4, 8), batches=(2,), hiddens=(4,), input_dim=3, repeats=2,
        baseline="impl:flax")
    c.warmup = 0
    return c
"""


def _write_tiny_config(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_CONFIG)
    return str(path)


@pytest.mark.slow  # long; CI keeps under 15 minutes (run with -m slow)
def test_benchmark_end_to_end(tmp_path, cli):
    workdir = tmp_path / "out"
    r = cli("experiments.benchmark", f"--config={_write_tiny_config(tmp_path)}",
            f"--workdir={workdir}", devices=1)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((workdir / "results.json").read_text())
    impls = {"cnn_rnn", "flax"} | ({"torch"} if any(x["impl"] == "torch" for x in rows) else set())
    assert len(rows) == 2 * (len(impls) + 2)
    for row in rows:
        assert REQUIRED <= set(row), row
        assert row["step_ms"] > 0
        assert f"[{row['impl']}] T={row['seq_len']}" in r.stdout  # one progress line per row
    ours = [x for x in rows if x["label"] == "lstm" and x["impl"] == "cnn_rnn"]
    assert all(x["ratio_vs_baseline"] > 0 and x["peak_bytes"] > 0 for x in ours)
    assert all("ratio_vs_baseline" not in x for x in rows if x["model"] == "mingru")
    assert (workdir / "step_time_vs_length.png").stat().st_size > 0
    assert "| lstm-seg | cnn_rnn | 8 |" in (workdir / "results.md").read_text()


def test_a_killed_benchmark_keeps_the_rows_timed_so_far(tmp_path):
    workdir = tmp_path / "out"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.benchmark",
         f"--config={_write_tiny_config(tmp_path)}", f"--workdir={workdir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # Killed at its first progress line: the second length's rows are not compiled yet.
        first = next(line for line in proc.stdout if line.startswith("[1/"))
    finally:
        proc.kill()
        proc.wait()
    total = int(first.split("/", 1)[1].split("]", 1)[0])
    rows = json.loads((workdir / "results.json").read_text())
    assert 1 <= len(rows) < total
    assert rows[0]["step_ms"] > 0 and rows[0]["seq_len"] == 4


@pytest.mark.parametrize("override,field", [
    ("--config.seq_lens=(0,)", "seq_lens"),
    ("--config.baseline=flax", "baseline"),
    ("--config.repeats=0", "repeats"),
])
def test_bad_config_values_fail_with_one_line(tmp_path, cli, override, field):
    r = cli("experiments.benchmark", f"--config={_write_tiny_config(tmp_path)}",
            f"--workdir={tmp_path}", override, devices=1)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), r.stderr


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the error off-GPU")
def test_gpu_config_off_gpu_fails_with_one_line(tmp_path, cli):
    r = cli("experiments.benchmark", "--config=configs/benchmarks/gpu.py", f"--workdir={tmp_path}",
            devices=1)
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error: ") and "CUDA GPU" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout


def _config(**changes):
    c = importlib.import_module("configs.benchmarks.recurrent_cpu").get_config("target")
    c.unlock()
    for k, v in changes.items():
        c[k] = v
    return c


@pytest.mark.parametrize("changes,field", [
    ({"models": ({"label": "x", "name": "resnet9"},)}, "model.name"),
    ({"models": ({"label": "x", "name": "lstm", "impls": ("keras",)},)}, "models[0].impls"),
    ({"models": ({"label": "x", "name": "lru", "impls": ("flax",)},)}, "models[0].impls"),
    ({"models": ({"label": "x", "name": "gru", "impls": ("engine",)},)}, "models[0].impls"),
    ({"models": ({"label": "x", "name": "lru", "impls": ("engine",), "options": {"impl": "fft"}},)},
     "model.impl"),
    ({"models": ({"label": "x", "name": "lstm", "option": {}},)}, "models[0]"),
    ({"batches": ()}, "batches"),
    ({"baseline": "option:remat"}, "baseline"),
])
def test_bad_config_values_are_config_errors(changes, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")) as e:
        suite.validate(_config(**changes))
    assert "\n" not in str(e.value)


def test_shipped_benchmark_configs_validate():
    for path in glob.glob(os.path.join(ROOT, "configs", "benchmarks", "*.py")):
        name = os.path.basename(path)[:-3]
        if name in ("__init__", "common"):
            continue
        module = importlib.import_module(f"configs.benchmarks.{name}")
        # Every variant a config declares (the GPU ones too: they must not fail on arrival).
        variants = {"recurrent_cpu": ("target", "default", "full")}.get(
            name, tuple(getattr(module, "VARIANTS", (None,))))
        for variant in variants:
            assert suite.build_cases(module.get_config(variant)), (name, variant)


def test_engine_rows_time_every_scan_engine_against_the_sequential_one():
    c = importlib.import_module("configs.benchmarks.scan_engines").get_config()
    c.update(seq_lens=(8,), batches=(2,), hiddens=(4,), repeats=2, warmup=0, budget_s=1.0)
    rows = suite.run_suite(c)
    assert sorted((r["model"], r["options"]["impl"]) for r in rows) == sorted(
        (m, i) for m in ("lru", "mingru") for i in ("sequential", "associative", "chunked"))
    for r in rows:
        assert r["impl"] == "engine" and r["step_ms"] > 0 and r["peak_bytes"] > 0, r
        assert (r["ratio_vs_baseline"] == 1.0) == (r["options"]["impl"] == "sequential"), r


def test_ratios_follow_the_baseline_spec():
    def row(label, impl, t, step, model="lstm", **options):
        return {"model": model, "label": label, "impl": impl, "seq_len": t, "batch": 2,
                "hidden": 4, "options": options, "step_ms": step, "compile_s": 1.0,
                "peak_bytes": None}

    rows = [row("lstm", "flax", 10, 4.0), row("lstm", "cnn_rnn", 10, 2.0, remat="none"),
            row("lstm-seg", "cnn_rnn", 10, 3.0, remat="segments"),
            row("lstm", "cnn_rnn", 20, 8.0, remat="none")]
    suite.add_ratios(rows, "impl:flax")
    assert [r.get("ratio_vs_baseline") for r in rows] == [1.0, 0.5, 0.75, None]
    for r in rows:
        r.pop("ratio_vs_baseline", None)
    suite.add_ratios(rows, "option:remat=none")
    assert [r.get("ratio_vs_baseline") for r in rows] == [None, 1.0, 1.5, 1.0]
    suite.add_ratios(rows, "seq_len:10")
    assert rows[3]["ratio_vs_baseline"] == 4.0 and rows[3]["compile_ratio_vs_baseline"] == 1.0
    assert "peak_ratio_vs_baseline" not in rows[3]


def test_timing_utilities():
    calls = []
    times = timing.interleaved_times([lambda: calls.append("a"), lambda: calls.append("b")],
                                     repeats=4, warmup=1)
    assert [len(t) for t in times] == [4, 4] and calls[2:6] == ["a", "b", "a", "b"]
    stopped = timing.interleaved_times([lambda: None], repeats=50, budget_s=0.0, min_repeats=3)
    assert len(stopped[0]) == 3
    compiled, seconds = timing.compile_timed(lambda a: a @ a.T, jnp.ones((8, 4)))
    assert seconds > 0 and timing.peak_bytes(compiled) >= (8 * 4 + 8 * 8) * 4


# --- remat ---------------------------------------------------------------------------------------


def _layer_grads(kind, x, mask, **kwargs):
    layer = RNN(CELLS[kind](hidden=5), out_features=2, bidirectional=True,
                **kwargs)
    params = layer.init(jax.random.key(1), x)["params"]

    def loss(p):
        return jnp.sum(jnp.sin(layer.apply({"params": p}, x, mask=mask)))

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("segment", [None, 4, 11, 50])  # sqrt, with a partial tail, T, > T
def test_segment_remat_gradient_equals_plain(kind, segment):
    t = 11
    x = jax.random.normal(jax.random.key(0), (3, t, 4))
    mask = jnp.arange(t)[None, :] < jnp.array([11, 6, 2])[:, None]
    loss0, g0 = _layer_grads(kind, x, mask, remat="none")
    loss1, g1 = _layer_grads(kind, x, mask, remat="segments", remat_segment=segment)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("groups,remat", [(2, "none"), (3, "step"), (3, "segments"), (9, "none")])
def test_batch_groups_give_the_plain_values_and_gradients(kind, groups, remat):
    # B=7: uneven groups; 9 > B runs unsplit.
    x = jax.random.normal(jax.random.key(0), (7, 6, 4))
    mask = jnp.arange(6)[None, :] < jnp.array([6, 3, 1, 6, 5, 2, 4])[:, None]
    loss0, g0 = _layer_grads(kind, x, mask, remat=remat, batch_groups=1)
    loss1, g1 = _layer_grads(kind, x, mask, remat=remat, batch_groups=groups)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)


def test_batch_groups_keep_the_perturbation_gradient():
    x = jax.random.normal(jax.random.key(0), (5, 6, 4))
    pert = [jnp.zeros((5, 6, 10))]

    def dl_dh(groups):
        layer = RNN(CELLS["gru"](hidden=5), bidirectional=True,
                    out_features=2, batch_groups=groups)
        variables = layer.init(jax.random.key(1), x)
        return jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply(variables, x, perturbations=p))))(
            pert)[0]

    np.testing.assert_allclose(dl_dh(2), dl_dh(1), rtol=1e-5, atol=1e-7)


def test_batch_groups_auto():
    gru, lstm = CELLS["gru"](hidden=4), CELLS["lstm"](hidden=4)
    cpu = jax.default_backend() == "cpu"
    assert resolve_batch_groups("auto", gru, 64) == (2 if cpu else 1)
    assert resolve_batch_groups("auto", gru, 63) == 1
    assert resolve_batch_groups("auto", lstm, 256) == 1
    assert resolve_batch_groups(3, lstm, 8) == 3


def test_scan_in_segments_matches_scan_and_stores_less():
    def body(c, x):
        c = jnp.tanh(jnp.sin(c * x) + jnp.exp(-c * c))  # several stored activations per step
        return c, c

    xs = jax.random.normal(jax.random.key(0), (1000, 64))
    plain = jax.lax.scan(body, jnp.zeros(64), xs)
    seg = scan_in_segments(body, jnp.zeros(64), xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), seg, plain)

    def temp_bytes(scan):
        grad = jax.grad(lambda x: jnp.sum(scan(body, jnp.zeros(64), x)[0]))
        return jax.jit(grad).lower(xs).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(scan_in_segments) < temp_bytes(jax.lax.scan) / 3


def test_remat_auto_and_bools():
    assert resolve_remat("auto", 4) == ("step" if jax.default_backend() == "cpu" else "none")
    assert resolve_remat("auto", 1) == "none"
    assert resolve_remat(True, 1) == "step" and resolve_remat(False, 4) == "none"
    with pytest.raises(ConfigError, match="remat"):
        build_model({"name": "gru", "remat": "sometimes"}, TaskSpec("classification", 2, (5, 3)))
    with pytest.raises(ConfigError, match="remat_segment"):
        build_model({"name": "gru", "remat_segment": 0}, TaskSpec("classification", 2, (5, 3)))


def test_bfloat16_compute_close_to_float32():
    x = jax.random.normal(jax.random.key(0), (2, 6, 3))
    spec = TaskSpec("classification", 4, (6, 3))
    f32 = build_model({"name": "lstm", "hidden": 8}, spec)
    bf16 = build_model({"name": "lstm", "hidden": 8, "dtype": "bfloat16"}, spec)
    variables = f32.init(jax.random.key(1), x)
    y32, y16 = f32.apply(variables, x), bf16.apply(variables, x)
    assert y16.dtype == jnp.float32
    np.testing.assert_allclose(y16, y32, atol=0.05)


# --- cuDNN ---------------------------------------------------------------------------------------


def _lstm_params(num_layers, bidirectional, d=4, h=5, seed=0):
    layer = RNN(CELLS["lstm"](hidden=h), num_layers=num_layers,
                bidirectional=bidirectional, return_sequences=True, out_features=2)
    x = jax.random.normal(jax.random.key(seed), (3, 7, d))
    params = layer.init(jax.random.key(seed + 1), x)["params"]
    # Non-zero biases, so that a bias mix-up cannot hide.
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape),
                          params)
    return layer, x, params


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_cudnn_weights_round_trip(num_layers, bidirectional):
    _, x, params = _lstm_params(num_layers, bidirectional)
    dirs = ("fwd", "bwd") if bidirectional else ("fwd",)
    ours = [params[f"layer{layer}_{d}"] for layer in range(num_layers) for d in dirs]
    flat = cudnn.to_cudnn(ours)
    assert flat.shape == (jax_rnn.get_num_params_in_lstm(4, 5, num_layers, bidirectional),)
    back = cudnn.from_cudnn(flat, 4, 5, num_layers, bidirectional)
    for got, want in zip(back, ours, strict=True):
        for key in ("W_x", "W_h", "b"):
            np.testing.assert_array_equal(got[key], want[key])
    # jax's own unpacking sees our matrices transposed (PyTorch/cuDNN layout) in the same places.
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(flat, 4, 5, num_layers, bidirectional)
    np.testing.assert_array_equal(w_ih[len(ours) - 1], ours[-1]["W_x"].T)
    np.testing.assert_array_equal(w_hh[0], ours[0]["W_h"].T)
    np.testing.assert_array_equal(b_ih[0] + b_hh[0], ours[0]["b"])
    with pytest.raises(ValueError, match="expected shape"):
        cudnn.from_cudnn(flat[:-1], 4, 5, num_layers, bidirectional)


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_cudnn_packing_matches_lstm_ref(num_layers, bidirectional):
    """Our scan layer = jax.experimental.rnn.lstm_ref (cuDNN's semantics) on the packed weights."""
    layer, x, params = _lstm_params(num_layers, bidirectional)
    lengths = jnp.array([7, 3, 5], jnp.int32)
    mask = jnp.arange(7)[None, :] < lengths[:, None]
    ours = layer.apply({"params": params}, x, mask=mask, method=RNN.hidden_states)[-1]
    dirs = ("fwd", "bwd") if bidirectional else ("fwd",)
    flat = cudnn.to_cudnn([params[f"layer{i}_{d}"] for i in range(num_layers) for d in dirs])
    unpacked = jax_rnn.unpack_lstm_weights(flat, 4, 5, num_layers, bidirectional)
    h0 = jnp.zeros((num_layers * len(dirs), 3, 5))
    ref, _, _ = jax_rnn.lstm_ref(x, h0, h0, *unpacked, lengths, 4, 5, num_layers, 0.0,
                                 bidirectional)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.slow  # long; CI keeps under 15 minutes (run with -m slow)
def test_cudnn_layer_path_with_reference_kernel(monkeypatch):
    """The layer's cuDNN branch (packing, lengths, finals, gradients) with lstm_ref as kernel."""
    layer, x, params = _lstm_params(2, True)
    mask = jnp.arange(7)[None, :] < jnp.array([7, 3, 5])[:, None]
    monkeypatch.setattr(cudnn, "require_cudnn", lambda: "reference")
    for return_sequences in (True, False):
        scan = layer.clone(return_sequences=return_sequences)
        ref = scan.clone(impl="cudnn")

        def loss(p, module):
            return jnp.sum(jnp.sin(module.apply({"params": p}, x, mask=mask)))

        (l0, g0), (l1, g1) = (jax.value_and_grad(loss)(params, m) for m in (scan, ref))
        np.testing.assert_allclose(l1, l0, rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g1, g0)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the error off-GPU")
def test_cudnn_off_gpu_is_a_clear_config_error():
    spec = TaskSpec("classification", 2, (5, 3))
    with pytest.raises(ConfigError, match="impl='cudnn' needs a CUDA GPU") as e:
        build_model({"name": "lstm", "impl": "cudnn"}, spec)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="lstm model only"):
        build_model({"name": "gru", "impl": "cudnn"}, spec)


@pytest.mark.parametrize("kind", ["rnn", "irnn"])
def test_elman_fast_path_matches_generic_scan(kind):
    """elman_scan's custom backward (no mask: the fast path) = the plain scan's autodiff."""
    x = jax.random.normal(jax.random.key(0), (3, 9, 4))
    fast = RNN(CELLS[kind](hidden=5), out_features=2, num_layers=2,
               bidirectional=True, return_sequences=True, input_projection="per_step")
    generic = fast.clone(unroll=2)  # any option off the fast path runs the generic scan
    params = fast.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape),
                          params)

    def loss(p, module, x):
        return jnp.sum(jnp.sin(module.apply({"params": p}, x)))

    (l0, g0), (l1, g1) = (jax.value_and_grad(loss, argnums=(0, 2))(params, m, x)
                          for m in (generic, fast))
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)


def test_streaming_rows_time_a_step_against_recomputing_the_window():
    c = importlib.import_module("configs.benchmarks.streaming").get_config()
    c.update(seq_lens=(16,), batches=(1,), hiddens=(4,), repeats=2, warmup=0, budget_s=1.0)
    rows = suite.run_suite(c)
    assert sorted((r["model"], r["impl"]) for r in rows) == sorted(
        (m, i) for m in ("gru", "lstm", "tcn") for i in ("stream", "recompute"))
    for r in rows:
        assert r["step_ms"] > 0 and (r["ratio_vs_baseline"] == 1.0) == (r["impl"] == "recompute")
    c.models = ({"label": "t", "name": "transformer", "impls": ("stream",), "options": {}},)
    with pytest.raises(ConfigError, match=r"models\[0\]\.impls: 'stream' needs a model that "
                                          "streams"):
        suite.build_cases(c)
