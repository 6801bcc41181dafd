"""Benchmark output: a progress line per row, a markdown table, results.json and a PNG plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

from cnn_rnn.tables import markdown_table  # noqa: E402

Row = Mapping[str, Any]
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PLOT_FILE = "step_time_vs_length.png"
COLUMNS = [("model", "label"), ("impl", "impl"), ("T", "seq_len"), ("B", "batch"),
           ("H", "hidden"), ("step ms", "step_ms"), ("vs baseline", "ratio_vs_baseline"),
           ("compile s", "compile_s"), ("compile ratio", "compile_ratio_vs_baseline"),
           ("peak MB", "peak_mb"), ("peak ratio", "peak_ratio_vs_baseline"),
           ("params", "params")]


def _fmt(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def progress_line(row: Row, i: int, n: int) -> str:
    """Return the one-line summary printed when a row has been measured."""
    peak = row.get("peak_bytes")
    parts = [f"[{i}/{n}] {row['label']} [{row['impl']}] T={row['seq_len']} B={row['batch']} "
             f"H={row['hidden']}: {row['step_ms']:.2f} ms/step (median of {row['repeats']})"]
    if row.get("compile_s") is not None:
        parts.append(f"compile {row['compile_s']:.2f} s")
    if peak is not None:
        parts.append(f"peak {peak / 2**20:.1f} MiB")
    return ", ".join(parts)


def table(rows: Sequence[Row]) -> str:
    """Return the rows as a markdown table (times in ms and s, memory in MiB, ratios)."""
    shown = []
    for r in rows:
        d = {k: r.get(k) for _, k in COLUMNS}
        d.update({k: _fmt(r.get(k)) for k in ("step_ms", "ratio_vs_baseline", "compile_s",
                                              "compile_ratio_vs_baseline",
                                              "peak_ratio_vs_baseline")})
        peak = r.get("peak_bytes")
        d["peak_mb"] = None if peak is None else f"{peak / 2**20:.1f}"
        shown.append(d)
    return markdown_table(shown, COLUMNS)


def write_results(rows: Sequence[Row], workdir: str) -> str:
    """Write the rows to `<workdir>/results.json` (atomically); return its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, RESULTS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(list(rows), f, indent=1, sort_keys=True, default=str)
    os.replace(path + ".tmp", path)
    return path


def plot_step_time(rows: Sequence[Row], path: str, title: str = "") -> str:
    """Plot step time against sequence length, one line per (model, impl), one panel per (B, H).

    Log-log axes: a line of slope 1 is time linear in T (a scan); a flatter one is parallel work.
    """
    panels = sorted({(r["batch"], r["hidden"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), squeeze=False)
    for ax, (batch, hidden) in zip(axes[0], panels, strict=True):
        sel = [r for r in rows if (r["batch"], r["hidden"]) == (batch, hidden)]
        for key in dict.fromkeys((r["label"], r["impl"]) for r in sel):
            line = sorted((r["seq_len"], r["step_ms"]) for r in sel
                          if (r["label"], r["impl"]) == key)
            ax.plot(*zip(*line, strict=True), marker="o", label=f"{key[0]} [{key[1]}]")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("training step (ms)")
        ax.set_title(f"B={batch}, H={hidden}" + (f" - {title}" if title else ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
