"""Sequence-to-sequence length ablation: exact match against source length, per architecture.

A GRU encoder-decoder without attention, with additive attention, and a Transformer
encoder-decoder, all at about the same parameter count; plus the encoder gradient-flow probe with
and without attention.

    python -m experiments.sweep --config=configs/ablations/seq2seq_lengths.py --workdir=runs/seq2seq

writes docs/seq2seq/report.md and docs/seq2seq/figures/*.png (`--config.report_dir=...` to put
them elsewhere). Variants (`seq2seq_lengths.py:smoke`): `smoke` (two short lengths, 30 steps),
`default` (lengths 5, 10, 20, 40; 500 steps; 12 runs with about 30 minutes of training in all,
measured on this project's 2-core CPU while other jobs kept its load near 20: an hour of wall
time there, far less on an idle machine), `full` (more steps and seeds, dot-product attention
too: for a GPU). Finished points are skipped, so an interrupted sweep resumes.
"""

from typing import Any

import ml_collections

from cnn_rnn.diagnostics.seq2seq_ablation import EncoderProbe
from cnn_rnn.diagnostics.seq2seq_ablation import write_report as render
from cnn_rnn.sweep import Point, grid_points
from configs.seq2seq import get_config as experiment

VARIANTS = {
    "smoke": dict(models=("none", "additive", "transformer"), lengths=(3, 6), steps=30,
                  seeds=1, budget=4000, num_eval=32, probe_batch=8),
    "default": dict(models=("none", "additive", "transformer"), lengths=(5, 10, 20, 40),
                    steps=500, seeds=1, budget=20_000, num_eval=256, probe_batch=64),
    "full": dict(models=("none", "additive", "dot", "transformer"),
                 lengths=(5, 10, 20, 30, 40, 60), steps=5000, seeds=3, budget=60_000,
                 num_eval=1000, probe_batch=128),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The seq2seq length ablation of variant `arg` (`smoke`, `default` or `full`)."""
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"config argument {variant!r} unknown; accepted: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict(dict(VARIANTS[variant]))
    c.variant = variant
    c.task = "reverse"
    c.vocab = 10
    c.cell = "gru"
    c.batch_size = 64
    c.learning_rate = 3e-3
    c.report_dir = "docs/seq2seq"
    return c


def get_points(c: ml_collections.ConfigDict) -> list[Point]:
    """One configs/seq2seq.py point per length x model x seed."""

    def point(length: int, model: str,
              seed: int) -> tuple[str, ml_collections.ConfigDict, dict[str, Any]]:
        cfg = experiment(f"model={model},cell={c.cell},task={c.task},length={length},"
                         f"vocab={c.vocab},budget={c.budget},steps={c.steps},seed={seed},"
                         f"learning_rate={c.learning_rate},batch_size={c.batch_size}")
        cfg.data.num_eval = c.num_eval
        cfg.keep_checkpoints = 1
        return f"L{length}_{model}_s{seed}", cfg, dict(arch=model, length=length, seed=seed)

    return grid_points(point, every=c.steps, log_every=c.steps, length=c.lengths,
                       model=c.models, seed=range(c.seeds))


def after_point(point: Point, workdir: str, row: dict[str, Any],
                c: ml_collections.ConfigDict) -> dict[str, Any]:
    """The encoder gradient-flow probe of the trained point (`EncoderProbe`)."""
    return EncoderProbe(c.probe_batch)(point, workdir, row)


def write_report(rows: list[dict[str, Any]], workdir: str, c: ml_collections.ConfigDict) -> None:
    """Write the report and its figures into `c.report_dir`."""
    command = ("python -m experiments.sweep --config=configs/ablations/seq2seq_lengths.py"
               + ("" if c.variant == "default" else f":{c.variant}") + " --workdir=DIR")
    path = render(rows, c.report_dir, command=command, settings=c.to_dict())
    print(f"report: {path}")
