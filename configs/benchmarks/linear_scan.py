"""Linear recurrences on CPU: sequential vs associative vs chunked scan, against the LSTM.

LRU and minGRU (one block, so that the recurrent width matches the one-layer LSTM's) with each
scan engine of `cnn_rnn.models.linear_scan`, and the sequential LSTM of the same width, in one
interleaved run. `ratio_vs_baseline` is a row's step time over the LSTM's at the same T; a
chunked row's speed-up over its own sequential scan is the ratio of the two rows' step times.
Targets (CPU): chunked >= 2x faster than sequential at T >= 1024, and no slower than the LSTM.
Variants (`:name`): `cpu` (T in 1024, 4096; B=16, H=64: a few minutes on 2 cores, the default),
`full` (T from 256 to 16384, B=32, H=256: for a GPU).
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model, pick_variant

VARIANTS = {
    "cpu": dict(seq_lens=(1024, 4096), batches=(16,), hiddens=(64,), repeats=5, budget_s=3.0),
    "full": dict(seq_lens=(256, 1024, 4096, 16384), batches=(32,), hiddens=(256,), repeats=11,
                 budget_s=10.0),
}
IMPLS = ("sequential", "associative", "chunked")
MODELS = [model("lstm"),
          *[model(f"{name}-{impl}", name, impl=impl, num_layers=1)
            for name in ("lru", "mingru") for impl in IMPLS]]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The scan engines of LRU and minGRU against the LSTM on the `variant` grid."""
    return benchmark_config(models=MODELS, baseline="label:lstm", input_dim=32,
                            title="linear recurrences: scan engines vs LSTM",
                            **pick_variant(arg, VARIANTS))
