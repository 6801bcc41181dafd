"""The results tables of docs/models.md at CPU scale.

Adding and copy at two lengths for tanh-RNN, LSTM, GRU and TCN; MNIST-1D for every model family
(each with its own tuned config); and shuffled MNIST-1D for CNN, GRU, LSTM, TCN and Transformer.

`python -m experiments.sweep --config=configs/sweeps/results_cpu.py --workdir=runs/results_cpu`
(about half an hour on 2 CPU cores). `--config.seeds=3` repeats every point over seeds.
"""

import importlib

import ml_collections

from cnn_rnn.sweep import Point

SEQUENCE_MODELS = ("rnn", "lstm", "gru", "tcn")
SHUFFLED_MODELS = ("cnn", "gru", "lstm", "tcn", "transformer")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The CPU results sweep: its seeds, adding and copy lengths and steps (`arg` is not read)."""
    c = ml_collections.ConfigDict()
    c.seeds = 1
    c.adding_lengths = (50, 200)
    c.copy_lengths = (20, 50)
    c.steps = 2000
    return c


def get_points(c: ml_collections.ConfigDict) -> list[Point]:
    """Adding and copy per length and model, then MNIST-1D standard and shuffled, per seed."""
    adding = importlib.import_module("configs.adding")
    copy = importlib.import_module("configs.copy")
    mnist1d = importlib.import_module("configs.mnist1d")
    points = []
    for seed in range(c.seeds):
        for task, module, lengths in (("adding", adding, c.adding_lengths),
                                      ("copy", copy, c.copy_lengths)):
            for T in lengths:
                for m in SEQUENCE_MODELS:
                    cfg = module.get_config(f"model={m},T={T},variant=cpu,steps={c.steps},"
                                            f"seed={seed}")
                    cfg.progress = False
                    points.append(Point(f"{task}_T{T}_{m}_s{seed}", cfg,
                                        dict(task=task, T=T, model=m, seed=seed)))
        for shuffle, models in ((False, mnist1d.MODELS), (True, SHUFFLED_MODELS)):
            for m in models:
                cfg = mnist1d.get_config(f"model={m},shuffle={shuffle},seed={seed}")
                cfg.progress = False
                task = "mnist1d_shuffled" if shuffle else "mnist1d"
                points.append(Point(f"{task}_{m}_s{seed}", cfg,
                                    dict(task=task, T=40, model=m, seed=seed)))
    return points
