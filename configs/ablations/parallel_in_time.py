"""Newton iterations (DEER, quasi-DEER) against gradient decay and Lyapunov exponents.

    python -m experiments.parallel_in_time --config=configs/ablations/parallel_in_time.py \
        --workdir=docs/parallel_in_time

For tanh-RNN, LSTM and GRU on each task of `tasks` at each of `lengths` (a task without a
`length` option, MNIST-1D, at its own length): at initialisation with the recurrent weights
scaled by each of `scales` (1 = the model's init; larger moves towards chaotic dynamics), and
after `train_steps` Adam steps on the task: iterations to convergence of both solvers, their
state and gradient errors against the sequential scan, the gradient-flow probe's decay rate and
the largest Lyapunov exponent (see cnn_rnn/diagnostics/newton.py). Variants: `default` (T = 64
and 1024 on adding and copy; 6.6-8.7 minutes on a shared 2-core CPU at load average 1.5-6),
`smoke` (seconds, for tests).
"""

import ml_collections

VARIANTS = {
    "default": dict(tasks=("adding", "copy", "mnist1d"), archs=("rnn", "lstm", "gru"),
                    scales=(0.5, 1.0, 3.0), lengths=(64, 1024), hidden=16, batch_size=4,
                    train_steps=400, train_batch_size=32),
    "smoke": dict(tasks=("adding",), archs=("rnn",), scales=(0.5, 4.0), lengths=(16,), hidden=8,
                  batch_size=2, train_steps=20, train_batch_size=8),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Newton-iterations ablation of variant `arg` (`default` or `smoke`)."""
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"config argument {variant!r} unknown; accepted: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict(VARIANTS[variant])
    c.stages = ("init", "trained")
    c.methods = ("deer", "quasi_deer")
    c.tol = 1e-5
    c.linear_solve = "auto"  # "sequential": the same iterates, cheaper on a CPU (pit.SolverOptions)
    c.seed = 0
    c.eval_batch_size = 250
    c.optimizer = dict(name="adam", learning_rate=3e-3, grad_clip_norm=1.0)
    return c
