"""Nonlinear RNNs solved in parallel over time: sequential scan vs DEER vs quasi-DEER.

The GRU model's training step (forward + backward + Adam) with impl="scan" (the baseline),
"deer" (full Jacobians: O(T H^2) memory) and "quasi_deer" (diagonal: O(T H)), same parameters.
`ratio_vs_baseline` / `peak_ratio_vs_baseline` are a row's step time / peak memory over the
scan's at the same T, B, H. Variants (`:name`):
  cpu   T in (64, 256, 1024, 4096), H in (16, 64), B=8 (the default; DEER's Jacobians at
        T=16384 do not fit a CPU run of a few minutes)
  gpu   T in (1024, 4096, 16384), H in (16, 64, 256), B=16 (goal: quasi_deer >= 10x faster
        than the scan at the small widths; not measured here: no GPU)
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model, pick_variant

VARIANTS = {
    "cpu": dict(seq_lens=(64, 256, 1024, 4096), batches=(8,), hiddens=(16, 64), repeats=3,
                budget_s=2.0),
    "gpu": dict(seq_lens=(1024, 4096, 16384), batches=(16,), hiddens=(16, 64, 256), repeats=11,
                budget_s=10.0),
}
MODELS = [model(f"gru-{impl}", "gru", impl=impl) for impl in ("scan", "deer", "quasi_deer")]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The GRU's scan against DEER and quasi-DEER on the `variant` grid."""
    c = benchmark_config(models=MODELS, baseline="option:impl=scan", input_dim=32,
                         title="GRU: scan vs DEER vs quasi-DEER", **pick_variant(arg, VARIANTS))
    c.warmup = 1
    return c
