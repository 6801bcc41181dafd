"""Benchmark cases of inference one new step at a time: impls "stream" and "recompute".

A model that has seen a window of T steps receives one more. "stream" advances its carry by one
`model.step` (the recurrent state, or the TCN's per-convolution buffers; `models/streaming.py`);
"recompute" runs the whole forward pass over the window again, as a model without a streaming
form must. Both are jitted inference (no gradients) on random inputs [B, T, D]; the ratio of the
two at T = 256 and 1,024 is what streaming buys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_rnn.benchmarking import timing
from cnn_rnn.benchmarking.case import Case, Prepared, random_batch
from cnn_rnn.benchmarking.cases import build_module
from cnn_rnn.models.streaming import require_streaming, stream
from cnn_rnn.training.state import param_count

IMPLS = ("stream", "recompute")


def prepare_streaming(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Compile one streaming step (carry after the window) or one forward over the window.

    `learning_rate` is unused (inference): the signature is that of the other impls.
    """
    module = build_module(case)
    require_streaming(module, case.model)
    x = jnp.asarray(random_batch(case, seed)[0])
    variables = jax.jit(module.init)(jax.random.key(seed), x[:1])
    if case.impl == "recompute":
        fn, args = (lambda v, x: module.apply(v, x)), (variables, x)
        notes = f"forward over the {case.seq_len}-step window"
    else:
        carry, _ = jax.jit(lambda v, x: stream(module, v, x))(variables, x)
        fn, args = (lambda v, c, x_t: module.step(v, c, x_t)), (variables, carry, x[:, -1])
        notes = f"one step after a {case.seq_len}-step window"
    compiled, compile_s = timing.compile_timed(fn, *args)

    def step() -> None:
        jax.block_until_ready(compiled(*args))

    return Prepared(step, compile_s, timing.peak_bytes(compiled),
                    param_count(variables["params"]), notes=notes)
