"""A paper's table with ours beside it: finished rows, rows in progress, and honest estimates.

Used by configs/sweeps/paper.py (Bai et al. 2018) to write docs/results_paper.md. An `Entry` is one
(task, model) cell of the paper's table; its point folder may hold a finished (or early-stopped)
run, an interrupted one, or nothing yet. A row that has not run shows the cost measured for it
(`step_seconds` on this machine, with the load at that time) instead of a number.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_rnn.training.metrics import read_metrics

HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cell of the table: where its run lives, its budget, and the paper's number."""

    task: str
    model: str
    point: str  # the sweep point's name (its folder)
    metric: str  # eval metric compared with the paper ("loss" or "accuracy")
    published: float | None
    max_steps: int
    eval_every: int
    eval_examples: int
    batch_size: int
    scale: float = 1.0  # ours x scale is the paper's unit (accuracy in %: 100)


def read_summary(point_dir: str) -> dict[str, Any] | None:
    """The point's summary.json, or None if it has not finished a session."""
    path = os.path.join(point_dir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def eval_curve(point_dir: str, metric: str) -> list[tuple[int, float]]:
    """(step, eval metric) of every evaluation the point has logged."""
    return [(int(r["step"]), float(r[metric])) for r in read_metrics(point_dir, "eval")
            if isinstance(r.get(metric), int | float)]


def estimate_seconds(entry: Entry, seconds_per_step: float) -> float:
    """The full budget's cost in seconds at `seconds_per_step`.

    Training steps, plus evaluations every `eval_every` steps counted as forward passes: a third
    of a training step per batch of `batch_size` examples.
    """
    evals = entry.max_steps // entry.eval_every
    eval_steps = evals * entry.eval_examples / entry.batch_size / 3.0
    return (entry.max_steps + eval_steps) * seconds_per_step


def _fmt(value: float | None, scale: float = 1.0) -> str:
    if value is None:
        return ""
    v = value * scale
    return f"{v:.3g}" if abs(v) >= 1e-2 or v == 0 else f"{v:.2e}"


def status(entry: Entry, summary: Mapping[str, Any] | None, curve: Sequence[tuple[int, float]],
           throughput: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(ours, steps, wall time) cells of one row."""
    if summary is not None and (summary["step"] >= entry.max_steps or summary.get("stopped")):
        stopped = summary.get("stopped")
        how = (f"{summary['step']:,} ({stopped['reason']})" if stopped
               else f"{summary['step']:,} (full budget)")
        ours = _fmt(summary["eval"].get(entry.metric), entry.scale)
        return ours, how, f"{summary['train_seconds'] / HOUR:.2f} h"
    done = f"in progress: {curve[-1][0]:,} of {entry.max_steps:,}; " if curve else ""
    if throughput is None:
        return "not yet run", f"{done}at most {entry.max_steps:,}", "not measured"
    est = estimate_seconds(entry, throughput["seconds_per_step"]) / HOUR
    return ("not yet run", f"{done}at most {entry.max_steps:,}",
            f"estimate <= {est:.1f} h ({throughput['seconds_per_step']:.3g} s/step)")


def table(entries: Sequence[Entry], workdir: str,
          throughput: Mapping[str, Mapping[str, Any]]) -> str:
    """The markdown table: task, model, params, ours, paper, steps, wall time."""
    lines = ["| task | model | params | ours | paper | steps run | wall time |",
             "|---|---|---|---|---|---|---|"]
    for e in entries:
        pdir = os.path.join(workdir, e.point)
        summary = read_summary(pdir)
        measured = throughput.get(e.point)
        ours, steps, wall = status(e, summary, eval_curve(pdir, e.metric), measured)
        params = summary["params"] if summary else (measured or {}).get("params")
        lines.append(f"| {e.task} | {e.model} | {params:,} | {ours} | "
                     f"{_fmt(e.published)} | {steps} | {wall} |" if params else
                     f"| {e.task} | {e.model} |  | {ours} | {_fmt(e.published)} | {steps} | "
                     f"{wall} |")
    return "\n".join(lines)


def plot_curves(entries: Sequence[Entry], workdir: str, baselines: Mapping[str, float],
                path: str) -> str | None:
    """Eval metric vs step, one panel per task (log scale for losses), as the paper's figures.

    Returns the path written, or None when no point has logged an evaluation yet.
    """
    tasks = list(dict.fromkeys(e.task for e in entries))
    curves = {e: eval_curve(os.path.join(workdir, e.point), e.metric) for e in entries}
    if not any(curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for e in (e for e in entries if e.task == task):
            if curves[e]:
                steps, values = zip(*curves[e], strict=True)
                ax.plot(steps, [v * e.scale for v in values], label=e.model)
            metric, scale = e.metric, e.scale
        if task in baselines:
            ax.axhline(baselines[task] * scale, color="gray", ls="--", lw=1, label="baseline")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set(title=task, xlabel="step", ylabel=f"eval {metric}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
