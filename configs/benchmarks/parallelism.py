"""Data-parallel backends: the loop's train step with `parallelism="jit"` against `"pmap"`.

Run with simulated devices on a CPU, e.g.
`XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.benchmark
--config=configs/benchmarks/parallelism.py --workdir=/tmp/bench_parallel`.
`ratio_vs_baseline` is a row's step time over the pmap row of the same model and shape.
"""

import ml_collections

from configs.benchmarks.common import benchmark_config, model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The jit against pmap benchmark of a GRU and a CNN (`arg` is not read)."""
    models = [model("gru", impls=("pmap", "jit")),
              model("cnn1d", impls=("pmap", "jit"), features=(32, 64, 64), kernel_size=5,
                    batch_norm=True)]
    return benchmark_config(models=models, seq_lens=(40,), batches=(128,), hiddens=(128,),
                            input_dim=1, repeats=11, budget_s=20.0, baseline="impl:pmap",
                            title="jit vs pmap, 8 devices")
