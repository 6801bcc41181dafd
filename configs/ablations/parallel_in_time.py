"""Newton iterations (DEER, quasi-DEER) against gradient decay and Lyapunov exponents.

    python -m experiments.parallel_in_time --config=configs/ablations/parallel_in_time.py \
        --workdir=docs/parallel_in_time

For tanh-RNN, LSTM and GRU at initialisation, with the recurrent weights scaled by each of
`scales` (1 = the model's init; larger moves towards chaotic dynamics), at each sequence length
of the adding task: iterations to convergence of both solvers, the gradient-flow probe's decay
rate and the largest Lyapunov exponent (see cnn_rnn/diagnostics/newton.py). Variants:
`default` (a few minutes on a 2-core CPU), `smoke` (seconds, for tests).
"""

import ml_collections

VARIANTS = {
    "default": dict(archs=("rnn", "lstm", "gru"), scales=(0.5, 1.0, 3.0),
                    lengths=(64, 256), hidden=32, batch_size=8),
    "smoke": dict(archs=("rnn",), scales=(0.5, 4.0), lengths=(16,), hidden=8, batch_size=2),
}


def get_config(arg=None):
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"config argument {variant!r} unknown; accepted: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict(VARIANTS[variant])
    c.task = "adding"
    c.methods = ("deer", "quasi_deer")
    c.tol = 1e-5
    c.seed = 0
    return c
