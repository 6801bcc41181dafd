"""GPU targets (run on a CUDA GPU; on a CPU the cuDNN rows fail with a one-line error).

Variants (`:name`):
  lstm      (default) LSTM at H=512, T=512, B=64 (D=512): our scan, our cuDNN path
            (impl="cudnn", same parameters), our scan in bfloat16, and PyTorch's nn.LSTM on
            cuDNN (`pip install torch` with CUDA). Target: ours <= 1.2x PyTorch
            (`ratio_vs_baseline`, baseline impl:torch).
  lengths   the full grid of configs/benchmarks/lengths.py (T up to 4096). Target: the
            associative-scan LRU/minGRU >= 10x faster than the LSTM at T=4096 (ratio <= 0.1).
  cells     configs/benchmarks/recurrent_cpu.py's shapes (ours vs flax vs torch) on the GPU.
"""

import importlib

import ml_collections

from configs.benchmarks.common import benchmark_config, model
from configs.common import parse_arg

VARIANTS = ("lstm", "lengths", "cells")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The GPU benchmark of `variant`: the LSTM against PyTorch, the lengths or the cells."""
    a = parse_arg(arg, dict(variant="lstm"))
    if a["variant"] not in VARIANTS:
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: "
                         f"{', '.join(VARIANTS)}")
    if a["variant"] == "lengths":
        return importlib.import_module("configs.benchmarks.lengths").get_config("full")
    if a["variant"] == "cells":
        return importlib.import_module("configs.benchmarks.recurrent_cpu").get_config("full")
    models = [model("lstm", impls=("cnn_rnn", "torch")),
              model("lstm-cudnn", "lstm", impl="cudnn"),
              model("lstm-bf16", "lstm", dtype="bfloat16")]
    return benchmark_config(models=models, seq_lens=(512,), batches=(64,), hiddens=(512,),
                            input_dim=512, repeats=21, baseline="impl:torch",
                            title="LSTM H=512 on GPU")
