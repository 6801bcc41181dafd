"""Runs side by side without code: one table and one figure of learning curves.

Reads only what every run leaves in its workdir: `summary.json` (model, parameters, steps,
train time, the task's baseline) and `metrics.jsonl` (train and eval records by step). The
main metric of a run is its task's baseline metric (e.g. `mse_original` for forecasting,
`accuracy` for classification); "best" is the lowest for losses and errors, the highest for
accuracies.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from cnn_rnn.diagnostics.report import fmt, table
from cnn_rnn.errors import ConfigError
from cnn_rnn.training.metrics import read_metrics

HIGHER_IS_BETTER = ("accuracy", "exact_match")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better (accuracies) rather than worse (losses)."""
    return any(metric.startswith(m) or metric.endswith(m) for m in HIGHER_IS_BETTER)


def read_run(workdir: str) -> dict[str, Any]:
    """A run's summary, metric name and histories (ConfigError("workdirs") if it has none)."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.isfile(path):
        raise ConfigError("workdirs", f"{workdir} has no summary.json (a run writes it when it "
                          "finishes); accepted: workdirs of finished runs of experiments.run")
    with open(path) as f:
        summary = json.load(f)
    evals, train = read_metrics(workdir, "eval"), read_metrics(workdir, "train")
    metric = summary["baseline"]["metric"] or "loss"
    if evals and metric not in evals[-1]:
        metric = "accuracy" if "accuracy" in evals[-1] else "loss"
    values = [r[metric] for r in evals if isinstance(r.get(metric), int | float)]
    best = (max if higher_is_better(metric) else min)(values) if values else None
    name = os.path.basename(os.path.normpath(workdir))
    return {"name": name, "summary": summary, "metric": metric, "evals": evals, "train": train,
            "final": values[-1] if values else None, "best": best}


def comparison_table(runs: Sequence[dict[str, Any]]) -> str:
    """The markdown table: run, model, parameters, steps, final and best metric, baseline, time."""
    body = []
    for r in runs:
        s = r["summary"]
        base = s["baseline"]
        body.append([r["name"], s["model"], f"{s['params']:,}", s["step"], r["metric"],
                     fmt(r["final"], 4), fmt(r["best"], 4),
                     fmt(base["value"], 4) if base["value"] is not None else "n/a",
                     f"{s['train_seconds']:.1f}"])
    return table(["run", "model", "params", "steps", "metric", "final", "best", "baseline",
                  "train s"], body)


def plot_curves(runs: Sequence[dict[str, Any]], path: str, temp: Any = lambda p: p) -> str:
    """Train loss and eval metric against step for every run, with the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    baselines: dict[tuple[str, float], None] = {}
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        train = [(x["step"], x["loss"]) for x in r["train"] if _finite(x.get("loss"))]
        if train:
            ax_loss.plot(*zip(*train, strict=True), color=color, label=r["name"])
        ev = [(x["step"], x[r["metric"]]) for x in r["evals"] if _finite(x.get(r["metric"]))]
        if ev:
            ax_eval.plot(*zip(*ev, strict=True), color=color, marker="o", ms=3,
                         label=f"{r['name']} ({r['metric']})")
        base = r["summary"]["baseline"]
        if base["value"] is not None:
            baselines[(base["metric"], float(base["value"]))] = None
    for k, (metric, value) in enumerate(baselines):
        ax_eval.axhline(value, color="k", ls="--", lw=1, alpha=0.4 + 0.6 / (k + 1),
                        label=f"baseline {metric} = {value:.4g}")
    ax_loss.set(xlabel="step", ylabel="train loss", title="training loss")
    ax_eval.set(xlabel="step", ylabel="eval metric", title="evaluation")
    for ax in (ax_loss, ax_eval):
        ax.legend(fontsize=7)
    if all(x > 0 for r in runs for _, x in ((0, y.get("loss", 1)) for y in r["train"])
           if _finite(x)):
        ax_loss.set_yscale("log")
    fig.tight_layout()
    fig.savefig(temp(path), dpi=110)
    plt.close(fig)
    return path


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)
