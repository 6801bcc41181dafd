"""Backpropagation through T=10,000 steps with and without rematerialisation: memory and time.

Rows: the plain scan (remat="none", the baseline), per-step remat ("step": only the carries are
stored) and segment remat ("segments": only every ceil(sqrt(T))-th carry is stored, one segment
recomputed at a time). `peak_ratio_vs_baseline` and `ratio_vs_baseline` give the memory and the
time of each against the plain scan (target for "segments": <= 1/4 of the memory at <= 1.5x the
time). `:T=N` changes the length. Compile time against length: configs/benchmarks/compile.py.
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model
from configs.common import parse_arg

CELLS = ("lstm", "gru", "rnn")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The rematerialisation benchmark: each cell's remat modes over `T` steps."""
    a = parse_arg(arg, dict(T=10_000, batch=16, hidden=128))
    models = [model(f"{cell}-remat-{remat}", cell, remat=remat)
              for cell in CELLS for remat in ("none", "step", "segments")]
    c = benchmark_config(models=models, seq_lens=(a["T"],), batches=(a["batch"],),
                         hiddens=(a["hidden"],), input_dim=32, repeats=3, budget_s=5.0,
                         title=f"BPTT over T={a['T']}")
    c.warmup = 1
    # Each cell against its own plain scan: the baseline label depends on the row.
    c.baseline = "option:remat=none"
    return c
