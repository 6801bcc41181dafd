"""A trained run as `jax.export` artifacts (serialized StableHLO) that run without this codebase.

`export_run(run, folder)` writes:
  forward.jax     the model's evaluation forward pass, inputs float32 [b, *input_shape] ->
                  outputs, the batch dimension `b` symbolic (any batch size); the trained
                  variables are constants inside it.
  init_carry.jax, step.jax   for models that stream (`models/streaming.py`): x_t [b, D] -> the
                  zero carry, and (carry, x_t) -> (carry, y_t).
  spec.json       what the artifacts take and give: input shape and dtype, task kind, outputs,
                  the normalisation the inputs need (a forecasting run's training mean/std,
                  window, horizon, columns and centring) and how to load them.
To use them (only jax needed):
    from jax import export
    forward = export.deserialize(open("forward.jax", "rb").read())
    y = forward.call(x)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from cnn_rnn.errors import ConfigError
from cnn_rnn.models import streaming

FORWARD, INIT_CARRY, STEP, SPEC = "forward.jax", "init_carry.jax", "step.jax", "spec.json"
USAGE = ("from jax import export; f = export.deserialize(open(PATH, 'rb').read()); "
         "y = f.call(x)")


def _exportable(model: Any) -> Any:
    # batch_groups="auto" asks whether the batch is large, which a symbolic batch cannot answer;
    # one group gives the same numbers.
    fields = {f.name for f in dataclasses.fields(model)}
    return model.clone(batch_groups=1) if "batch_groups" in fields else model


def normalisation(run: Any) -> dict[str, Any]:
    """What a caller must do to raw data before the forward pass, as JSON."""
    cfg = run.config["data"]
    if cfg["name"] != "timeseries":
        return {"note": "inputs in the units the model was trained on (as the run's batches)"}
    from cnn_rnn.inference.forecast import run_columns

    window, c = run.spec.input_shape
    return {"columns": [str(col) for col in run_columns(cfg)], "mean": run.data.mean.tolist(),
            "std": run.data.std.tolist(), "window": window,
            "horizon": run.spec.num_outputs // c, "center": cfg.get("center") or "last",
            "recipe": "x = (last `window` rows - mean) / std; with center='last' subtract "
                      "x[-1] (keep it as s); y = forward(x[None]) reshaped [horizon, C]; "
                      "forecast = (y + s) * std + mean"}


def _write(path: str, exported: export.Exported) -> int:
    blob = exported.serialize()
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)


def export_run(run: Any, folder: str, temp: Callable[[str], str] = lambda p: p
               ) -> dict[str, Any]:
    """Write the run's artifacts and spec into `folder` (through `temp`); return the spec."""
    model = _exportable(run.model)
    variables = run.variables
    b = export.symbolic_shape("b")[0]
    x_spec = jax.ShapeDtypeStruct((b, *run.spec.input_shape), jnp.float32)

    def forward(x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False)

    sizes = {FORWARD: _write(temp(os.path.join(folder, FORWARD)),
                             export.export(jax.jit(forward))(x_spec))}
    stream = None
    try:
        streaming.require_streaming(model, run.config["model"]["name"])
        can_stream = True
    except ConfigError as e:
        can_stream, stream = False, {"refused": str(e)}
    if can_stream:
        d = run.spec.input_shape[-1]
        xt_spec = jax.ShapeDtypeStruct((b, d), jnp.float32)

        def init_carry(x_t: jax.Array) -> Any:
            carry = model.init_carry(1, d, x_t.dtype)
            return jax.tree.map(lambda a: jnp.zeros((x_t.shape[0], *a.shape[1:]), a.dtype),
                                carry)

        def step(carry: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
            return model.step(variables, carry, x_t)

        carry_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype),
                                  jax.eval_shape(lambda: model.init_carry(1, d)))
        sizes[INIT_CARRY] = _write(temp(os.path.join(folder, INIT_CARRY)),
                                   export.export(jax.jit(init_carry))(xt_spec))
        sizes[STEP] = _write(temp(os.path.join(folder, STEP)),
                             export.export(jax.jit(step))(carry_spec, xt_spec))
        stream = {"init_carry": INIT_CARRY, "step": STEP, "x_t": ["b", d],
                  "usage": "carry = init_carry.call(x0); carry, y_t = step.call(carry, x_t)"}
    spec = {"model": run.config["model"]["name"], "data": run.config["data"]["name"],
            "step": run.step, "kind": run.spec.kind, "num_outputs": run.spec.num_outputs,
            "input": {"shape": ["b", *run.spec.input_shape], "dtype": "float32"},
            "forward": FORWARD, "streaming": stream, "normalisation": normalisation(run),
            "bytes": sizes, "jax": jax.__version__, "usage": USAGE}
    with open(temp(os.path.join(folder, SPEC)), "w") as f:
        json.dump(spec, f, indent=1)
    return spec


def load_seconds(path: str) -> float:
    """Seconds to read and deserialize an artifact (what a user waits for before a call)."""
    start = time.perf_counter()
    with open(path, "rb") as f:
        export.deserialize(bytearray(f.read()))
    return time.perf_counter() - start


def example_inputs(run: Any, n: int = 4, seed: int = 0) -> np.ndarray:
    """`n` float32 inputs of the run's shape (the first eval examples, else random ones)."""
    try:
        return np.asarray(next(iter(run.data.eval_batches(n)))["inputs"][:n], np.float32)
    except StopIteration:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, *run.spec.input_shape)).astype(np.float32)
