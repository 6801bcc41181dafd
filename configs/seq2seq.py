"""Sequence to sequence on the generated translation task (reverse or sort a symbol sequence).

The models: a GRU/LSTM encoder-decoder without attention, with additive or dot-product
attention, or the Transformer encoder-decoder, at (about) the same parameter count.

Arguments (`configs/seq2seq.py:model=additive,length=20`): model (none, additive, dot,
transformer), cell (gru, lstm), task (reverse, sort), length, min_length (0 = length), vocab,
budget (parameters each model is sized to), steps, seed. Training uses teacher forcing;
evaluation decodes greedily and reports per-token accuracy and exact match.

    python -m experiments.run --config=configs/seq2seq.py:model=additive,length=20 --workdir=DIR
"""

import functools
from typing import Any

import jax
import ml_collections

from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec
from configs.common import base_config, parse_arg
from configs.presets import check_budget

MODELS = ("none", "additive", "dot", "transformer")


def param_count(model_config: dict[str, Any], vocab: int, length: int) -> int:
    """Parameters of a seq2seq model for the task's shapes, without running it."""
    spec = TaskSpec(kind="seq2seq", num_outputs=vocab + 1, input_shape=(length, vocab),
                    target_len=length + 1)
    model = build_model(model_config, spec)
    x = jax.ShapeDtypeStruct((1, length, vocab), "float32")
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


@functools.lru_cache(maxsize=64)
def matched_model(model: str, cell: str, budget: int, vocab: int,
                  length: int = 8) -> dict[str, Any]:
    """The model section whose width puts the parameter count closest to `budget`."""
    if model not in MODELS:
        raise ValueError(f"config argument model={model!r}; accepted: {', '.join(MODELS)}")
    check_budget(budget)

    def section(width: int) -> dict[str, Any]:
        if model == "transformer":  # 2 encoder + 2 decoder layers, 2 heads
            return dict(name="seq2seq_transformer", d_model=2 * width, num_heads=2,
                        num_layers=2, mlp_dim=4 * width, dropout=0.0)
        return dict(name="seq2seq_rnn", cell=cell, attention=model, hidden=width, embed=16)

    # Counts grow with the width; bisect over width = hidden, or d_model/2 (2 heads).
    lo, hi = 1, 64 if model == "transformer" else 512
    while lo < hi:
        mid = (lo + hi) // 2
        if param_count(section(mid), vocab, length) < budget:
            lo = mid + 1
        else:
            hi = mid
    best = min((w for w in (lo - 1, lo) if w >= 1),
               key=lambda w: abs(param_count(section(w), vocab, length) - budget))
    return section(best)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The seq2seq config: `model` sized to `budget` parameters on the `task` of `length`."""
    a = parse_arg(arg, dict(model="additive", cell="gru", task="reverse", length=10,
                            min_length=0, vocab=10, budget=30_000, steps=2000, seed=0,
                            learning_rate=3e-3, batch_size=64))
    data = dict(name="translation", task=a["task"], length=a["length"], vocab=a["vocab"],
                num_eval=512)
    if a["min_length"]:
        data["min_length"] = a["min_length"]
    lr = a["learning_rate"] if a["model"] != "transformer" else a["learning_rate"] / 3
    c = base_config(model=matched_model(a["model"], a["cell"], a["budget"], a["vocab"]),
                    data=data, steps=a["steps"], batch_size=a["batch_size"], learning_rate=lr,
                    optimizer="adamw", schedule="cosine", warmup_steps=100, grad_clip_norm=1.0,
                    seed=a["seed"])
    return c
