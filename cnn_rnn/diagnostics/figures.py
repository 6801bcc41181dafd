"""Figures of an ablation (matplotlib Agg, PNG): gradient profiles, loss vs length, clipping.

Each function takes the sweep rows (see `ablation`), writes one PNG and returns its path, or
None when the rows hold nothing to draw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

# No matplotlib.use("Agg") here: headless machines pick Agg by themselves, and forcing it on
# import would switch off inline plots in a notebook that imports this module.
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from matplotlib.transforms import blended_transform_factory

from cnn_rnn.diagnostics import profiles
from cnn_rnn.diagnostics.ablation import SUMMARY_LAYER, final_loss, profile
from cnn_rnn.training.stopping import DIVERGED_RATIO

ARCH_LABELS = {"rnn": "tanh-RNN", "irnn": "IRNN (ReLU, W=I)", "lstm": "LSTM", "gru": "GRU",
               "tcn": "TCN", "lru": "LRU", "mingru": "minGRU", "transformer": "Transformer"}
Rows = Sequence[Mapping[str, Any]]


def label(arch: str) -> str:
    """Return the display name of a registered architecture."""
    return ARCH_LABELS.get(arch, arch)


def _save(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def arch_order(archs: Sequence[str]) -> list[str]:
    """Return the distinct architectures in ARCH_LABELS order (unknown ones last, sorted)."""
    known = list(ARCH_LABELS)
    return sorted(set(archs), key=lambda a: (known.index(a) if a in known else len(known), a))


def mean_log_profile(rows: Rows, when: str) -> np.ndarray | None:
    """Return the mean over rows of log10 g by distance (geometric mean over seeds), or None.

    Zeros (a TCN's skipped taps, steps beyond its receptive field, float32 underflow) are nan:
    drawn as gaps, not as a cliff to an arbitrary floor.
    """
    logs = []
    for p in (profile(r, when) for r in rows):
        if p is not None:
            g = profiles.by_distance(p)
            with np.errstate(divide="ignore", invalid="ignore"):
                logs.append(np.where(g > 0, np.log10(np.where(g > 0, g, 1.0)), np.nan))
    return np.mean(logs, axis=0) if logs else None


def plot_gradient_profiles(rows: Rows, task: str, path: str) -> str | None:
    """Plot log10 ‖∂L/∂h_t‖ against distance T-1-t, one panel per architecture.

    One colour per length; solid at initialisation, dashed after training (the last probe).
    """
    main = [r for r in rows if r.get("group") == "main" and r["task"] == task and r.get("probes")]
    if not main:
        return None
    archs = arch_order([r["arch"] for r in main])
    lengths = sorted({r["T"] for r in main})
    cols = min(3, len(archs))
    nrows = -(-len(archs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False,
                             sharey=True)
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(lengths)))
    for ax, arch in zip(axes.flat, archs, strict=False):
        for colour, length in zip(colours, lengths, strict=True):
            group = [r for r in main if r["arch"] == arch and r["T"] == length]
            for when, style in (("init", "-"), ("final", "--")):
                curve = mean_log_profile(group, when)
                if curve is not None:
                    # Dots only where zeros leave gaps (a TCN's skipped taps), else lines.
                    ax.plot(np.arange(len(curve)), curve, style, color=colour,
                            lw=1.6 if when == "init" else 1.1,
                            marker="." if np.isnan(curve).any() else None, ms=3,
                            label=f"T={length}" if when == "init" else None)
        ax.set_title(label(arch))
        ax.set_xlabel("distance from the last step, T-1-t")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"log10 ‖∂L/∂h_t‖ (layer {SUMMARY_LAYER + 1})")
    for ax in list(axes.flat)[len(archs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, title="solid: init, dashed: trained", title_fontsize=7)
    fig.suptitle(f"{task}: gradient reaching step t")
    return _save(fig, path)




def plot_metric_vs_length(rows: Rows, task: str, path: str) -> str | None:
    """Plot final eval loss against length per architecture, with the task's trivial baseline."""
    main = [r for r in rows if r.get("group") == "main" and r["task"] == task]
    if not main:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    base = sorted({(r["T"], r["baseline"]["value"]) for r in main})
    # A diverged point (NaN, or far above the baseline) is drawn as an x on this line, so that
    # it does not stretch the axis over the decades where the others differ.
    cap = DIVERGED_RATIO * max(b for _, b in base)
    diverged = False
    for arch in arch_order([r["arch"] for r in main]):
        group = [r for r in main if r["arch"] == arch]
        lengths = sorted({r["T"] for r in group})
        losses = np.array([np.mean([final_loss(r) for r in group if r["T"] == t])
                           for t in lengths])
        over = ~np.isfinite(losses) | (losses > cap)
        (line,) = ax.plot(lengths, np.where(over, cap, losses), "o-", label=label(arch))
        if over.any():
            diverged = True
            ax.plot(np.array(lengths)[over], np.full(over.sum(), cap), "x", ms=10, mew=2.5,
                    color=line.get_color())
    ax.plot([t for t, _ in base], [b for _, b in base], "k--", lw=1.5, label="trivial baseline")
    if diverged:
        ax.axhline(cap, color="grey", lw=0.8, ls=":",
                   label=f"x: diverged (NaN or > {DIVERGED_RATIO:g} x baseline)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({r["T"] for r in main})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("final eval loss")
    ax.set_title(f"{task}: final loss vs length")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside: the lines fill
    return _save(fig, path)


def plot_clipping(rows: Rows, path: str) -> str | None:
    """Plot the largest gradient norm per logged window, and the train loss, with/without clipping.

    Solid: clipped; dashed: not. Windows whose norm was not finite (steps skipped) are marked
    along the top edge (x: without clipping, +: with clipping).
    """
    clip = [r for r in rows if r.get("group") == "clip" and r.get("history")]
    if not clip:
        return None
    fig, (ax_g, ax_l) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    # x in data units, y in axes units: a rug along the top, whatever the y range.
    rug = blended_transform_factory(ax_g.transData, ax_g.transAxes)
    keys = sorted({(r["task"], r["arch"], r["T"], r["seed"]) for r in clip})
    colours = plt.cm.tab10(np.arange(len(keys)) % 10)
    for colour, key in zip(colours, keys, strict=True):
        for r in [r for r in clip if (r["task"], r["arch"], r["T"], r["seed"]) == key]:
            steps = np.array([h["step"] for h in r["history"]])
            norm = np.array([h.get("grad_norm_max", np.nan) for h in r["history"]])
            loss = np.array([h.get("loss", np.nan) for h in r["history"]])
            style = "-" if r["clip"] else "--"
            name = f"{label(key[1])} {key[0]} T={key[2]} s{key[3]}, " + (
                "clipped" if r["clip"] else "no clipping")
            ax_g.plot(steps, np.where(np.isfinite(norm), norm, np.nan), style, color=colour,
                      marker="o", ms=2, label=name)
            ax_l.plot(steps, np.where(np.isfinite(loss), loss, np.nan), style, color=colour,
                      label=name)
            bad = steps[~np.isfinite(norm)]
            ax_g.plot(bad, np.full(len(bad), 0.97), "+" if r["clip"] else "x", color=colour,
                      ms=7, transform=rug)
    ax_g.set_yscale("log")
    ax_g.set_ylabel("max ‖gradient‖ per window (before clipping)")
    ax_g.set_title("gradient norm (top marks: non-finite windows)")
    ax_l.set_yscale("log")
    ax_l.set_ylabel("train loss (finite windows)")
    for ax in (ax_g, ax_l):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    ax_l.legend(fontsize=7)
    return _save(fig, path)
