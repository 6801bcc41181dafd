"""The parallel-in-time report: a table of every point, sentences computed from it, a figure.

Rows come from `newton.run` (see cnn_rnn/diagnostics/newton.py for the quantities). Nothing here
asserts a result in advance: a run where, say, Newton needs many iterations at a negative
Lyapunov exponent says exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_rnn.diagnostics.newton import max_iters
from cnn_rnn.diagnostics.report import fmt, table

STATE_TOL, GRAD_TOL = 1e-4, 1e-3  # the accuracy the solvers must reach against the scan
LONG_T = 1024  # the length the issue states that accuracy at
# The two regimes the sentences split the points by: contracting, and chaotic (or neutral).
EXPONENT_SIGNS = (("negative", lambda v: v < 0), ("positive or zero", lambda v: v >= 0))


def correlation(rows: list[dict[str, Any]], x: str, y: str) -> float:
    """Spearman rank correlation of two columns over the rows where both are finite."""
    pairs = np.array([(r[x], r[y]) for r in rows
                      if np.isfinite(r[x]) and np.isfinite(r[y])], dtype=float)
    if len(pairs) < 3:
        return float("nan")
    ranks = np.argsort(np.argsort(pairs, axis=0), axis=0).astype(float)
    return float(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])


def plot(rows: list[dict[str, Any]], methods: Sequence[str], path: str) -> str:
    """Newton iterations against the Lyapunov exponent and the decay rate, one row per method.

    Marker shape: arch; colour: sequence length; filled: at initialisation, hollow: trained.
    Solves that fell back to the scan have no iteration count and are left out (the table
    lists them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_rnn.diagnostics.figures import _save

    fig, axes = plt.subplots(len(methods), 2, figsize=(10, 3.6 * len(methods)), sharey="row",
                             squeeze=False)
    markers = dict(zip(sorted({r["arch"] for r in rows}), "osD^v", strict=False))
    lengths = sorted({r["T"] for r in rows})
    colors = dict(zip(lengths, plt.cm.viridis(np.linspace(0.0, 0.85, len(lengths))),
                      strict=True))
    for method, row_axes in zip(methods, axes, strict=True):
        for ax, x, xlabel in ((row_axes[0], "lyapunov", "largest Lyapunov exponent (nats/step)"),
                              (row_axes[1], "decay_rate", "gradient decay rate (decades/step)")):
            for r in rows:
                if r[f"converged_{method}"]:
                    color = colors[r["T"]]
                    ax.scatter(r[x], r[f"iterations_{method}"], marker=markers[r["arch"]],
                               facecolors=color if r["stage"] == "init" else "none",
                               edgecolors=color, alpha=0.8)
            ax.set_xlabel(xlabel)
            ax.axvline(0.0, color="grey", lw=0.5)
        row_axes[0].set_ylabel(f"{method} iterations to converge")
        row_axes[0].set_yscale("log")
    handles = [plt.Line2D([], [], ls="", marker=m, color="grey", label=a)
               for a, m in markers.items()]
    handles += [plt.Line2D([], [], ls="", marker="o", color=c, label=f"T={t}")
                for t, c in colors.items()]
    handles += [plt.Line2D([], [], ls="", marker="o", color="grey", label="init"),
                plt.Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey",
                           label="trained")]
    axes[0][1].legend(handles=handles, fontsize=7, ncol=2)
    return _save(fig, path)


def _iterations(row: dict[str, Any], method: str) -> str:
    its = row[f"iterations_{method}"]
    if row[f"converged_{method}"]:
        return str(its)
    # Stopped before the budget: a non-finite iterate (see parallel_in_time._iterating).
    return f"{its} (fell back: {'max iters' if its >= max_iters(row['T']) else 'non-finite'})"


def beats_baseline(row: dict[str, Any]) -> bool:
    """Whether the row's eval metric beats its task's baseline (lower loss, higher accuracy)."""
    if row["baseline_metric"] == "accuracy":
        return row["accuracy"] > row["baseline"]
    return row["loss"] < row["baseline"]


def _metric(row: dict[str, Any]) -> str:
    acc = row.get("accuracy")
    return fmt(row["loss"]) + ("" if acc is None else f" / {fmt(acc)}")


def solver_table(rows: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """A markdown table of every point: metrics, Lyapunov exponent, each method's solve."""
    head = ["task", "arch", "stage", "W_h scale", "T", "eval loss / acc.", "baseline",
            "Lyapunov", "decay rate", *[f"{m} {col}" for m in methods
                                        for col in ("iters", "state err.", "grad err.")]]
    body = [[r["task"], r["arch"], r["stage"], r["scale"], r["T"], _metric(r),
             f"{r['baseline_metric']} {fmt(r['baseline'])}", r["lyapunov"], r["decay_rate"],
             *[v for m in methods for v in (_iterations(r, m), r[f"state_error_{m}"],
                                            r[f"grad_error_{m}"])]] for r in rows]
    return table(head, body)


def method_sentences(rows: list[dict[str, Any]], method: str) -> list[str]:
    """Correlations and iteration ranges of one method over its converged points.

    A solve that fell back to the scan (max_iters reached, or a non-finite iterate) has no
    meaningful iteration count: it is counted, not ranged or correlated.
    """
    done = [{**r, "its": r[f"iterations_{method}"] / r["T"]} for r in rows
            if r[f"converged_{method}"]]
    trained = [r for r in done if r["stage"] == "trained"]
    if len(done) < 3:  # a rank correlation needs three points
        lines = [f"- {method}: {len(done)} converged point(s), too few for a rank correlation."]
    else:
        lines = [
            f"- {method}: over the {len(done)} converged points, rank correlation of "
            f"iterations/T with the Lyapunov exponent {correlation(done, 'lyapunov', 'its'):+.2f}"
            f", with the gradient decay rate {correlation(done, 'decay_rate', 'its'):+.2f}; over "
            f"the {len(trained)} converged trained points "
            f"{correlation(trained, 'lyapunov', 'its'):+.2f} and "
            f"{correlation(trained, 'decay_rate', 'its'):+.2f}. Per length, of the iterations "
            "with the Lyapunov exponent: " + ", ".join(
                f"T={t} {correlation([r for r in done if r['T'] == t], 'lyapunov', 'its'):+.2f}"
                for t in sorted({r["T"] for r in done})) + "."]
    for sign, keep in EXPONENT_SIGNS:
        points = [r for r in rows if keep(r["lyapunov"])]
        its = [r[f"iterations_{method}"] for r in done if keep(r["lyapunov"])]
        per_t = [r["its"] for r in done if keep(r["lyapunov"])]
        if points:
            text = (f"{min(its)}-{max(its)} iterations (median {np.median(its):.0f}; "
                    f"{min(per_t):.2g}-{max(per_t):.2g} T)" if its else "no converged solve")
            count = f"{len(points)} point" + "s" * (len(points) != 1)
            lines.append(f"  Where the Lyapunov exponent is {sign} ({count}): "
                         f"{text}; {len(points) - len(its)} fell back to the sequential scan.")
    return lines


def accuracy_sentences(rows: list[dict[str, Any]], methods: Sequence[str]) -> list[str]:
    """The largest state and relative gradient errors over the converged solves.

    Split by the sign of the Lyapunov exponent: on chaotic dynamics float32 rounding grows like
    exp(lambda t), so no two evaluation orders (Newton's, the scan's) agree to a fixed tolerance.
    """
    out = []
    for sign, keep in EXPONENT_SIGNS:
        pairs = [(r, m) for r in rows for m in methods if keep(r["lyapunov"])]
        done = [(r, m) for r, m in pairs if r[f"converged_{m}"]]
        if not pairs:
            continue
        state = max((r[f"state_error_{m}"] for r, m in done), default=float("nan"))
        grad = max((r[f"grad_error_{m}"] for r, m in done), default=float("nan"))
        longest = [(r, m) for r, m in done if r["T"] >= LONG_T]
        out.append(
            f"- Lyapunov exponent {sign}: largest state error over all {len(done)} converged "
            f"(point, method) pairs: {state:.2g} (tolerance {STATE_TOL:g}); largest relative "
            f"gradient error: {grad:.2g} ({GRAD_TOL:g}); {len(pairs) - len(done)} pairs fell "
            f"back to the scan. At T >= {LONG_T}: {len(longest)} converged pairs, largest "
            f"errors {max((r[f'state_error_{m}'] for r, m in longest), default=float('nan')):.2g}"
            f" and {max((r[f'grad_error_{m}'] for r, m in longest), default=float('nan')):.2g}.")
    return out


def report(rows: list[dict[str, Any]], config: Any, command: str, figure: str) -> str:
    """The markdown report: the table of every point and sentences computed from it."""
    trained = [r for r in rows if r["stage"] == "trained"]
    lines = ["# Newton iterations vs gradient decay and Lyapunov exponents", "",
             f"Generated by `{command}` (hidden={config.hidden}, batch={config.batch_size}, "
             f"tol={config.tol}, max_iters=2T+1; trained: {config.train_steps} steps of "
             f"{config.optimizer.name}, learning rate {config.optimizer.learning_rate}, batch "
             f"{config.train_batch_size}). See `cnn_rnn/diagnostics/newton.py` for the "
             "definitions; the eval metrics are on the task's fixed evaluation set, the baseline "
             "is the task's (e.g. predicting the mean, chance).",
             "", solver_table(rows, config.methods), ""]
    for m in config.methods:
        lines += method_sentences(rows, m)
    if trained:
        exponents = [r["lyapunov"] for r in trained]
        lines.append(f"- Trained points: Lyapunov exponents {min(exponents):+.3g} to "
                     f"{max(exponents):+.3g} nats/step.")
        beat = [f"{r['task']} {r['arch']} T={r['T']}: {r['baseline_metric']} "
                f"{fmt(r[r['baseline_metric']])} vs {fmt(r['baseline'])}"
                for r in trained if beats_baseline(r)]
        lines.append(f"- Trained points beating their task's baseline: {len(beat)} of "
                     f"{len(trained)} ({', '.join(beat) or 'none'}).")
    lines += ["", "Accuracy against the sequential scan:", "",
              *accuracy_sentences(rows, config.methods), "",
              f"![iterations vs Lyapunov exponent and decay rate]({figure})", ""]
    return "\n".join(lines)
