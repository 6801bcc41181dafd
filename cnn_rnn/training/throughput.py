"""Seconds per training step of an experiment config: the loop's own step, compile excluded.

What a long run will cost is decided before it starts: `step_seconds` builds the config's data,
model and optimizer exactly as `train_and_evaluate` does, compiles the same step on the same
backend, and times a short slice of real batches (evaluation and checkpoints are not counted).
Nothing is written anywhere.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from cnn_rnn.training import distributed, parallel
from cnn_rnn.training.config import complete
from cnn_rnn.training.loop import build_run, init_errors_as_config
from cnn_rnn.training.state import create_train_state, param_count
from cnn_rnn.training.steps import train_step


def step_seconds(config: Any, steps: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Time `steps` training steps of `config` after `warmup` (compiling) steps.

    Returns {"seconds_per_step": median, "min": fastest, "params": count, "compile_seconds":
    the first warm-up step}. The batches are the run's own first ones (batch s of (seed, s)).
    """
    cfg = complete(config)
    data, model, tx = build_run(cfg)
    with init_errors_as_config(cfg, data.spec.input_shape):
        state = create_train_state(model, tx, data.spec.input_shape,
                                   jax.random.PRNGKey(cfg["seed"]))
    n_params = param_count(state.params)
    backend = parallel.make_backend(cfg["parallelism"])
    p_train = backend.compile(train_step, donate_state=True, model=model, spec=data.spec)
    state = backend.put_state(state)
    times = []
    for step in range(warmup + steps):
        batch = distributed.local_rows(data.train_batch(step, cfg["batch_size"]))
        t0 = time.perf_counter()
        state, metrics = p_train(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    timed = np.asarray(times[warmup:])
    return {"seconds_per_step": float(np.median(timed)), "min": float(timed.min()),
            "params": n_params, "compile_seconds": round(times[0], 2)}
