"""The run config: its fields, their defaults (stated here once), and `complete`.

`complete` validates a config and fills in every default before anything is built or written.
A run config is what `configs/*.py` return (`configs.common.base_config`): the standard training
fields below, `model` and `data` (a registered name plus its keywords) and `optimizer`. The loop,
sweeps and run records read the completed plain dict (`RunConfig`) and never repeat a default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, TypedDict

from cnn_rnn.config_checks import check_int, check_number
from cnn_rnn.data.registry import DATA
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import MODELS

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear")
# Data-parallel backends (cnn_rnn/training/parallel): jax.pmap, or jax.jit + NamedSharding.
PARALLELISMS = ("pmap", "jit")
NONFINITE_POLICIES = ("stop", "skip")
POSITIVE_INTS = ("steps", "batch_size", "eval_every", "checkpoint_every", "keep_checkpoints",
                 "log_every")
# jax.random.PRNGKey keeps the low 32 bits of a seed: 2**32 would silently alias seed 0.
SEED_MAX = 2**32 - 1

# The defaults of the optional fields, here and nowhere else.
RUN_DEFAULTS: dict[str, Any] = {
    "eval_batch_size": 0,  # 0: large batches that fit (cnn_rnn/data/pipeline.py)
    "keep_checkpoints": 3,
    "progress": True,
    "parallelism": "pmap",
    "on_nonfinite": "stop",
}
OPTIMIZER_DEFAULTS: dict[str, Any] = {
    "schedule": "constant",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "grad_clip_norm": 0.0,
    "momentum": 0.0,
}

log = logging.getLogger(__name__)


class OptimizerConfig(TypedDict):
    """`config.optimizer`, completed (see cnn_rnn/training/optim.py)."""

    name: str
    learning_rate: float
    schedule: str
    warmup_steps: int
    weight_decay: float
    grad_clip_norm: float
    momentum: float


class RunConfig(TypedDict):
    """A completed run config: every field present, every value checked."""

    seed: int
    steps: int
    batch_size: int
    eval_batch_size: int
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    progress: bool
    parallelism: str
    on_nonfinite: str
    model: dict[str, Any]
    data: dict[str, Any]
    optimizer: OptimizerConfig


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-dict copy of a ConfigDict (or mapping)."""
    return json.loads(config.to_json()) if hasattr(config, "to_json") else json.loads(
        json.dumps(dict(config)))


def _check_choice(field: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ConfigError(field, f"unknown {value!r}; accepted: {', '.join(accepted)}")


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first bad standard field of a completed config."""
    check_int("seed", cfg["seed"], 0, SEED_MAX)
    for key in POSITIVE_INTS:
        check_int(key, cfg[key], 1)
    check_int("eval_batch_size", cfg["eval_batch_size"], 0)
    for section in ("model", "data"):
        name = cfg[section].get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{section}.name", f"must be a non-empty string, got {name!r}")
    _check_choice("parallelism", cfg["parallelism"], PARALLELISMS)
    _check_choice("on_nonfinite", cfg["on_nonfinite"], NONFINITE_POLICIES)
    opt = cfg["optimizer"]
    _check_choice("optimizer.name", opt.get("name"), OPTIMIZERS)
    _check_choice("optimizer.schedule", opt["schedule"], SCHEDULES)
    check_number("optimizer.learning_rate", opt.get("learning_rate"), strict=True)
    for key in ("grad_clip_norm", "weight_decay", "momentum"):
        check_number(f"optimizer.{key}", opt[key])
    if check_int("optimizer.warmup_steps", opt["warmup_steps"], 0) > cfg["steps"]:
        log.warning("optimizer.warmup_steps=%d is longer than the run (steps=%d): the learning "
                    "rate never reaches its peak", opt["warmup_steps"], cfg["steps"])


def complete(config: Any) -> RunConfig:
    """The config as a plain dict with every default filled in, validated; ConfigError if not.

    Missing optional fields take RUN_DEFAULTS / OPTIMIZER_DEFAULTS, and `model` / `data` every
    keyword of their constructor at its default (None: the default), so that the record of a run
    (config.json, checkpoints) names all of it. Idempotent.
    """
    cfg = to_dict(config)
    for key in ("seed", "model", "data", "optimizer", *POSITIVE_INTS):
        if key not in cfg:
            raise ConfigError(key, "missing from the config")
    for key in ("model", "data", "optimizer"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(key, f"must be a section (name: value, ...), got {cfg[key]!r}")
    for key, value in RUN_DEFAULTS.items():
        cfg.setdefault(key, value)
    cfg = complete_sections(cfg)
    validate(cfg)
    return cfg  # type: ignore[return-value]


def complete_sections(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg` with `model`, `data` and `optimizer` (those it has) at their full defaults."""
    out = dict(cfg)
    if isinstance(out.get("model"), Mapping):
        out["model"] = MODELS.complete(out["model"])
    if isinstance(out.get("data"), Mapping):
        out["data"] = DATA.complete(out["data"])
    if isinstance(out.get("optimizer"), Mapping):
        out["optimizer"] = {**OPTIMIZER_DEFAULTS, **out["optimizer"]}
    return out
