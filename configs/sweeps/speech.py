"""Spoken digits (FSDD): every model on the official split, then each speaker held out in turn.

    python -m experiments.sweep --config=configs/sweeps/speech.py --workdir=runs/speech

writes docs/speech/results.md (`--config.report=...` elsewhere), the confusion matrix of the best
official-split model (docs/speech/confusion.png) and the gradient-flow probe over the frames of
the tanh-RNN and the GRU (docs/speech/gradient_flow.png). Resumable: finished points are skipped.
`--config.held_out=()` runs only the official split (about 5 minutes a model on 2 CPU cores);
`--report_only` (or `--config.report_only=True`) rewrites the report from the points finished so
far without training, listing those not run yet.
"""

from typing import Any

import ml_collections

from cnn_rnn.sweep import Point
from configs.speech import FSDD_SPEAKERS
from configs.speech import get_config as experiment


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The spoken-digit sweep: models, held-out speakers, steps and report (`arg` is not read)."""
    c = ml_collections.ConfigDict()
    c.models = ("crnn", "gru", "cnn2d", "lstm", "transformer", "tcn", "rnn")
    c.held_out = FSDD_SPEAKERS
    c.steps = 1000
    c.seed = 0
    c.path = ""
    c.report = "docs/speech/results.md"
    c.report_only = False
    return c


def point_name(model: str, held_out: str | None) -> str:
    """A point's folder: `official_<model>` or `heldout_<speaker>_<model>`."""
    return f"official_{model}" if held_out is None else f"heldout_{held_out}_{model}"


def all_points(c: ml_collections.ConfigDict) -> list[Point]:
    """Every point of the full sweep, official split first, then one speaker at a time."""
    points = []
    for held_out in (None, *FSDD_SPEAKERS):
        for model in c.models:
            split = "official" if held_out is None else f"speakers,speaker={held_out}"
            cfg = experiment(f"model={model},split={split},steps={c.steps},seed={c.seed}"
                             + (f",path={c.path}" if c.path else ""))
            cfg.progress = False
            cfg.eval_every = cfg.checkpoint_every = c.steps
            points.append(Point(point_name(model, held_out), cfg,
                                dict(model=model, held_out=held_out or "official")))
    return points


def get_points(c: ml_collections.ConfigDict) -> list[Point]:
    """The official split's points and those of the speakers in `held_out`."""
    return [p for p in all_points(c) if p.tags["held_out"] in ("official", *c.held_out)]


def after_point(point: Point, workdir: str, row: dict[str, Any],
                c: ml_collections.ConfigDict) -> dict[str, Any]:
    """The point's confusion matrix and gradient-flow probe (`evaluate_point`), cached."""
    from cnn_rnn.diagnostics.speech_report import evaluate_point

    return evaluate_point(point, workdir)


def write_report(rows: list[dict[str, Any]], workdir: str, c: ml_collections.ConfigDict) -> None:
    """Write the report at `c.report` from every point of the full sweep, run or not."""
    from cnn_rnn.diagnostics.speech_report import write_report as write

    write(all_points(c), workdir, c.report)
