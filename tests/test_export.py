"""experiments.export: the artifacts, deserialized in a fresh process that never imports cnn_rnn,
give load_run's outputs (forward pass at two batch sizes, and the streaming step) to 1e-6."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from trained_runs import forecast_run

from cnn_rnn.models.streaming import stream
from cnn_rnn.training import load_run

# Runs in a fresh interpreter: only jax and numpy; fails if anything imported cnn_rnn.
CONSUMER = textwrap.dedent("""
    import sys
    import numpy as np
    from jax import export

    folder, data = sys.argv[1], np.load(sys.argv[2])
    load = lambda name: export.deserialize(bytearray(open(f"{folder}/{name}", "rb").read()))
    forward, init_carry, step = load("forward.jax"), load("init_carry.jax"), load("step.jax")
    out = {"y5": forward.call(data["x5"]), "y2": forward.call(data["x2"])}
    carry, ys = init_carry.call(data["x2"][:, 0]), []
    for t in range(data["x2"].shape[1]):
        carry, y = step.call(carry, data["x2"][:, t])
        ys.append(y)
    out["stream"] = np.stack(ys, 1)
    assert not [m for m in sys.modules if m.startswith("cnn_rnn")], "cnn_rnn was imported"
    np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    workdir, _ = forecast_run(base)
    from conftest import run_cli

    r = run_cli("experiments.export", f"--workdir={workdir}", devices=1)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    return workdir, workdir / "export"


def test_a_fresh_process_without_cnn_rnn_gets_load_runs_outputs(exported, tmp_path):
    workdir, folder = exported
    run = load_run(str(workdir))
    rng = np.random.default_rng(0)
    x5 = rng.standard_normal((5, *run.spec.input_shape)).astype(np.float32)
    x2 = x5[:2]
    np.savez(tmp_path / "in.npz", x5=x5, x2=x2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    r = subprocess.run([sys.executable, "-c", CONSUMER, str(folder), str(tmp_path / "in.npz"),
                        str(tmp_path / "out.npz")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npz")
    d5 = np.max(np.abs(out["y5"] - np.asarray(run.apply(x5))))
    d2 = np.max(np.abs(out["y2"] - np.asarray(run.apply(x2))))
    seq = run.model.clone(return_sequences=False)
    _, ys = jax.jit(lambda v, x: stream(seq, v, x))(run.variables, x2)
    ds = np.max(np.abs(out["stream"] - np.asarray(ys)))
    print(f"exported vs load_run: forward max |diff| {d5:.1e} (b=5), {d2:.1e} (b=2); "
          f"streaming step {ds:.1e}")
    assert max(d5, d2, ds) <= 1e-6
    assert np.max(np.abs(out["stream"][:, -1] - out["y2"])) <= 1e-6  # stream end = forward


def test_spec_names_the_inputs_and_the_normalisation(exported):
    _, folder = exported
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["input"] == {"shape": ["b", 24, 1], "dtype": "float32"}
    assert spec["normalisation"]["columns"] == ["value"] and spec["normalisation"]["horizon"] == 6
    assert spec["streaming"]["step"] == "step.jax"
    assert sorted(os.listdir(folder)) == ["forward.jax", "init_carry.jax", "spec.json",
                                          "step.jax"]
    assert all(v > 0 for v in spec["bytes"].values())
