"""Our LSTM, GRU and tanh-RNN against flax's built-in cells and PyTorch: training step on CPU.

The target shape is B=64, T=200, D=32, H=128; `ratio_vs_baseline` is a row's step time over
flax's at the same shape (target: <= 0.8 for ours, and ours below torch's). Variants (`:name`):
  target    B=64, T=200 only (about a minute on 2 cores)
  default   T in (50, 200, 1000) x B in (16, 64)
  full      T in (50, 200, 1000) x B in (16, 64, 256)
`:repeats=N` sets the timed steps per row.
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model
from configs.common import parse_arg

CELLS = ("lstm", "gru", "rnn")
GRIDS = {"target": ((200,), (64,)), "default": ((50, 200, 1000), (16, 64)),
         "full": ((50, 200, 1000), (16, 64, 256))}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Our cells against flax's and PyTorch's on the `variant` grid, `repeats` steps a row."""
    a = parse_arg(arg, dict(variant="default", repeats=15))
    if a["variant"] not in GRIDS:
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: {', '.join(GRIDS)}")
    seq_lens, batches = GRIDS[a["variant"]]
    return benchmark_config(
        models=[model(name, impls=("cnn_rnn", "flax", "torch")) for name in CELLS],
        seq_lens=seq_lens, batches=batches, hiddens=(128,), input_dim=32,
        baseline="impl:flax", repeats=a["repeats"], title="ours vs flax vs torch")
