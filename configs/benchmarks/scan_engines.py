"""The linear-recurrence scan engines alone: sequential vs associative vs chunked.

Forward + backward of `linear_scan` on one LRU / minGRU layer's coefficients ([B, T, H]; see
`cnn_rnn.benchmarking.engine_cases`), without the layer around it. `ratio_vs_baseline` is a row's
time over the sequential engine's for the same model and shape. Set beside the model rows of
`linear_scan.py` (same shapes), the difference is what the rest of the layer costs.
Variants (`:name`): `cpu` (T in 1024, 4096; B=16, H=64, the default), `full` (T from 256 to
16384, B=32, H=256: for a GPU).
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model, pick_variant
from configs.benchmarks.linear_scan import IMPLS, VARIANTS

MODELS = [model(f"{name}-{impl}", name, impls=("engine",), impl=impl)
          for name in ("lru", "mingru") for impl in IMPLS]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The scan engines alone, forward and backward, on the `variant` grid."""
    return benchmark_config(models=MODELS, baseline="option:impl=sequential", input_dim=32,
                            title="linear-recurrence scan engines (forward + backward)",
                            **pick_variant(arg, VARIANTS))
