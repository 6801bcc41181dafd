"""Step time against sequence length: CNN, TCN, LSTM and the parallel-scan linear recurrences.

A CNN computes every position at once and an LSTM steps through time; LRU and minGRU compute
their linear recurrence with an associative scan (O(log T) depth) or, for comparison, with a
sequential scan. `ratio_vs_baseline` is a row's step time over the LSTM's at the same T (GPU
target: the associative scans >= 10x faster than the LSTM at T=4096, i.e. ratio <= 0.1).
Variants (`:name`):
  cpu    T in (64, 256, 1024, 4096), B=16, H=64: a few minutes on 2 CPU cores (the default)
  full   T in (64, 128, ..., 4096), B=32, H=256: for a GPU
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model, pick_variant

VARIANTS = {
    "cpu": dict(seq_lens=(64, 256, 1024, 4096), batches=(16,), hiddens=(64,), repeats=5,
                budget_s=3.0),
    "full": dict(seq_lens=(64, 128, 256, 512, 1024, 2048, 4096), batches=(32,), hiddens=(256,),
                 repeats=11, budget_s=10.0),
}
MODELS = [
    model("cnn1d", head="mean"),
    model("tcn"),
    model("lstm"),
    model("lru-parallel", "lru", impl="parallel"),
    model("lru-sequential", "lru", impl="sequential"),
    model("mingru-parallel", "mingru", impl="parallel"),
    model("mingru-sequential", "mingru", impl="sequential"),
]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The step time against length benchmark on the `variant` grid (`cpu` or `full`)."""
    return benchmark_config(models=MODELS, baseline="label:lstm", input_dim=32,
                            title="step time vs length", **pick_variant(arg, VARIANTS))
