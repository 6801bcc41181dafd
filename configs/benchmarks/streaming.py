"""Per-step inference latency: a streaming step vs recomputing the whole window.

GRU, LSTM (their carry) and TCN (its per-convolution buffers; 4 levels, k=3) at windows 256 and
1,024, batch 1 (one live stream) and 16, hidden 64; `ratio_vs_baseline` is the streaming step's
time over the recompute's, measured interleaved in the same run. `:repeats=N` sets the rounds.

    python -m experiments.benchmark --config=configs/benchmarks/streaming.py --workdir=DIR
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model
from configs.common import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The streaming step against recomputing the window, `repeats` rounds a row."""
    a = parse_arg(arg, dict(repeats=21))
    return benchmark_config(
        models=[model(name, impls=("stream", "recompute")) for name in ("gru", "lstm", "tcn")],
        seq_lens=(256, 1024), batches=(1, 16), hiddens=(64,), input_dim=8,
        baseline="impl:recompute", repeats=a["repeats"], budget_s=5.0,
        title="one new step: streaming vs recomputing the window")
