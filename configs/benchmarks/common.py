"""Shared fields of the benchmark configs (see cnn_rnn/benchmarking/suite.py for their meaning).

`python -m experiments.benchmark --config=configs/benchmarks/<name>.py --workdir=DIR`; any field
can be overridden, e.g. `--config.repeats=5 --config.seq_lens='(64,256)'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections


def model(label: str, name: str | None = None, impls: Sequence[str] = ("cnn_rnn",),
          **options: Any) -> dict[str, Any]:
    """One entry of `models`: a label, a registered model, its implementations and options."""
    return dict(label=label, name=name or label, impls=tuple(impls), options=options)


def benchmark_config(*, models: Sequence[dict[str, Any]], seq_lens: Sequence[int],
                     batches: Sequence[int], hiddens: Sequence[int], baseline: str = "",
                     title: str = "", input_dim: int = 32, repeats: int = 11,
                     budget_s: float = 10.0) -> ml_collections.ConfigDict:
    """A complete benchmark config."""
    c = ml_collections.ConfigDict()
    c.title = title
    c.models = tuple(models)
    c.seq_lens = tuple(seq_lens)
    c.batches = tuple(batches)
    c.hiddens = tuple(hiddens)
    c.input_dim = input_dim
    c.num_classes = 10
    c.learning_rate = 1e-3
    c.seed = 0
    c.warmup = 2
    c.repeats = repeats
    c.min_repeats = 3
    c.budget_s = budget_s
    c.baseline = baseline
    return c


def pick_variant(arg: Any, variants: dict[str, dict[str, Any]],
                 default: str = "cpu") -> dict[str, Any]:
    """Return the grid of the `:variant=NAME` config argument (ValueError naming the accepted)."""
    from configs.common import parse_arg

    a = parse_arg(arg, dict(variant=default))
    if a["variant"] not in variants:
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: "
                         f"{', '.join(variants)}")
    return variants[a["variant"]]
