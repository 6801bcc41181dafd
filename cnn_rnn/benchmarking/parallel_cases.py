"""Benchmark cases of the training loop's own data-parallel step: impls "pmap" and "jit".

Unlike the other impls (a minimal jitted step on one device), these run `steps.train_step`
through a `cnn_rnn.training.parallel` backend over every device (simulated ones on a CPU), with
the loop's metric sums and non-finite checks, so the rows compare the two backends themselves.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from cnn_rnn.benchmarking.case import Case, Prepared, case_spec, random_batch
from cnn_rnn.models.registry import build_model
from cnn_rnn.training import parallel
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import create_train_state, param_count
from cnn_rnn.training.steps import train_step


def prepare_parallel(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Build the case's model and compile the loop's train step with backend `case.impl`."""
    spec = case_spec(case)
    kwargs = {"name": case.model, "hidden": case.hidden, **case.options}
    model = build_model(kwargs, spec, axis_name=parallel.AXIS)
    tx = build_optimizer({"name": "adam", "learning_rate": learning_rate}, 1000)
    host_state = create_train_state(model, tx, spec.input_shape, jax.random.PRNGKey(seed))
    backend = parallel.make_backend(case.impl)
    backend.check_batch_size(case.batch)
    fn = backend.compile(train_step, donate_state=True, model=model, spec=spec)
    x, y = random_batch(case, seed)
    batch = {"inputs": x, "targets": y, "weights": np.ones(case.batch, np.float32)}
    state = [backend.put_state(host_state)]
    # The first call compiles (and runs one step, which the first timed warmup would anyway).
    start = time.perf_counter()
    state[0], out = fn(state[0], batch)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - start

    def step() -> None:
        state[0], metrics = fn(state[0], batch)
        jax.block_until_ready(metrics)

    return Prepared(step, compile_s, None, param_count(host_state.params),
                    notes=f"{backend.name} over {backend.n_devices} devices")
