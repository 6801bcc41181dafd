"""DEER's linear solves: all at once (associative scan) vs `lax.scan` through time.

Each Newton iteration of DEER solves a linear recurrence d_t = J_t d_{t-1} + r_t with full
Jacobians J_t [H, H]. `newton_linear_solve="auto"` (the layer's default) composes them by the
associative scan: O(log T) depth, O(T H^3) work in matrix products. `"sequential"` runs
`lax.scan` over time: T dependent steps, O(T H^2) work in matrix-vector products, the same
iterates. The GRU model's training step (forward + backward + Adam), `ratio_vs_baseline` = a row's
step time over the all-at-once solve's at the same T, B, H; the scan row is the plain GRU for
reference. Variants (`:name`):
  cpu   T in (256, 1024), H in (64, 128), B=4 (the default)
  gpu   T in (1024, 4096), H in (64, 256), B=16 (not measured here: no GPU)
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model, pick_variant

VARIANTS = {
    "cpu": dict(seq_lens=(256, 1024), batches=(4,), hiddens=(64, 128), repeats=3, budget_s=2.0),
    "gpu": dict(seq_lens=(1024, 4096), batches=(16,), hiddens=(64, 256), repeats=11,
                budget_s=10.0),
}
MODELS = [model("gru-scan", "gru", impl="scan"),
          *[model(f"gru-deer-{solve}", "gru", impl="deer", newton_linear_solve=solve)
            for solve in ("auto", "sequential")]]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """DEER's all-at-once against sequential linear solves on the `variant` grid."""
    c = benchmark_config(models=MODELS, baseline="option:newton_linear_solve=auto", input_dim=32,
                         title="GRU DEER: associative vs sequential linear solves",
                         **pick_variant(arg, VARIANTS))
    c.warmup = 1
    return c
