"""Checks of the standard config fields, before anything is built or written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.optim import OPTIMIZERS, SCHEDULES

POSITIVE_INTS = ("steps", "batch_size", "eval_every", "checkpoint_every", "keep_checkpoints",
                 "log_every")
NONFINITE_POLICIES = ("stop", "skip")


def _int(config: Mapping[str, Any], key: str, minimum: int, prefix: str = "") -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(prefix + key, f"must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(prefix + key, f"must be >= {minimum}, got {value}")
    return value


def _number(config: Mapping[str, Any], key: str, prefix: str, positive: bool) -> float:
    value = config.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(prefix + key, f"must be a number, got {value!r}")
    if (positive and not value > 0) or value < 0:
        raise ConfigError(prefix + key, f"must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first bad standard field and what it accepts."""
    for key in ("seed", "model", "data", "optimizer", *POSITIVE_INTS):
        if key not in config:
            raise ConfigError(key, "missing from the config")
    _int(config, "seed", 0)
    for key in POSITIVE_INTS:
        _int(config, key, 1)
    if config["checkpoint_every"] % config["log_every"]:
        raise ConfigError(
            "checkpoint_every",
            f"{config['checkpoint_every']} must be a multiple of log_every={config['log_every']} "
            "(so a resumed run logs the same training windows)")
    for section in ("model", "data"):
        name = config[section].get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{section}.name", f"must be a non-empty string, got {name!r}")
    opt = config["optimizer"]
    if opt.get("name") not in OPTIMIZERS:
        raise ConfigError("optimizer.name",
                          f"unknown {opt.get('name')!r}; accepted: {', '.join(OPTIMIZERS)}")
    if opt.get("schedule", "constant") not in SCHEDULES:
        raise ConfigError("optimizer.schedule",
                          f"unknown {opt.get('schedule')!r}; accepted: {', '.join(SCHEDULES)}")
    _number(opt, "learning_rate", "optimizer.", positive=True)
    for key in ("grad_clip_norm", "weight_decay", "momentum"):
        _number(opt, key, "optimizer.", positive=False)
    if "warmup_steps" in opt:
        _int(opt, "warmup_steps", 0, "optimizer.")
    policy = config.get("on_nonfinite", "stop")
    if policy not in NONFINITE_POLICIES:
        raise ConfigError("on_nonfinite",
                          f"unknown {policy!r}; accepted: {', '.join(NONFINITE_POLICIES)}")
