"""Compile time against sequence length: T=10 against T=1000 (target: within 1.3x).

A scan compiles its body once, whatever T, so the compile time should not grow with the length
(an unrolled loop's would). `compile_ratio_vs_baseline` is a row's compile time over the same
model's at T=10. Includes segment remat (a nested scan) and unroll=8 for comparison.
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The compile-time benchmark: each model at T=10 and T=1000 (`arg` is not read)."""
    models = [model("lstm"), model("gru"), model("rnn"),
              model("lstm-remat-segments", "lstm", remat="segments"),
              model("lstm-unroll8", "lstm", unroll=8),
              model("lstm-flax", "lstm", impls=("flax",))]
    return benchmark_config(models=models, seq_lens=(10, 1000), batches=(64,), hiddens=(128,),
                            input_dim=32, repeats=3, budget_s=2.0, baseline="seq_len:10",
                            title="compile time vs length")
