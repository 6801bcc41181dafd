"""The one home of config value checks; every failure is a `ConfigError` naming the full field.

Two layers: small checks of one value (`check_int`, `check_number`, `check_rate`, `check_choice`,
`check_int_tuple`) that data sources, models and the benchmark suite call from their
constructors with the field's full dotted name; and `validate_config`, the checks of the
standard training fields, applied once where a config comes in (`train_and_evaluate`, sweeps)
before anything is built or written. A ConfigError is a ValueError, so code that calls a model or
source directly can still catch ValueError.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnn_rnn.errors import ConfigError

POSITIVE_INTS = ("steps", "batch_size", "eval_every", "checkpoint_every", "keep_checkpoints",
                 "log_every")
NONFINITE_POLICIES = ("stop", "skip")
INT32_MAX = 2**31 - 1
# jax.random.PRNGKey keeps the low 32 bits of a seed: 2**32 would silently alias seed 0.
SEED_MAX = 2**32 - 1

log = logging.getLogger(__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(field: str, value: Any, minimum: int, maximum: int = INT32_MAX) -> int:
    """Return `value` as an int if `minimum <= value <= maximum`, else raise ConfigError.

    The default maximum is the largest int32: JAX indexes arrays and counts steps with 32-bit
    integers, so a larger size or count is a typo, not a request.
    """
    if not _is_int(value):
        raise ConfigError(field, f"must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value}")
    if value > maximum:
        raise ConfigError(field, f"must be <= {maximum:,}, got {value:,}")
    return int(value)


def check_number(field: str, value: Any, *, minimum: float = 0.0, strict: bool = False,
                 below: float | None = None) -> float:
    """Return `value` as a float if it is a finite number in range, else raise ConfigError.

    The range is `value >= minimum` (`> minimum` if `strict`) and, with `below`, `value < below`.
    """
    low = f"{'>' if strict else '>='} {minimum:g}"
    accepted = low if below is None else f"in {'(' if strict else '['}{minimum:g}, {below:g})"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(field, f"must be a number {accepted}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number {accepted}, got {value}")
    if value < minimum or (strict and value == minimum) or (below is not None and value >= below):
        raise ConfigError(field, f"must be {accepted}, got {value:g}")
    return value


def check_rate(field: str, value: Any) -> float:
    """Return `value` if it is a probability-like rate in [0, 1) (dropout), else ConfigError."""
    return check_number(field, value, minimum=0.0, below=1.0)


def check_choice(field: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return `value` if it is one of `choices`, else raise ConfigError listing them."""
    if value in choices:
        return value
    raise ConfigError(field, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_int_tuple(field: str, values: Any, minimum: int = 1, *,
                    allow_empty: bool = False) -> tuple[int, ...]:
    """Return `values` as a tuple of ints >= `minimum` (e.g. layer widths), else ConfigError."""
    seq = tuple(values) if isinstance(values, list | tuple) else None
    if (seq is None or (not seq and not allow_empty)
            or any(not _is_int(v) or v < minimum for v in seq)):
        raise ConfigError(field, f"must be a {'' if allow_empty else 'non-empty '}list of "
                          f"integers >= {minimum}, got {values!r}")
    return tuple(int(v) for v in seq)


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first bad standard training field and what it accepts."""
    # Imported here so that data sources and models can use the checks above without optax.
    from cnn_rnn.training.optim import OPTIMIZERS, SCHEDULES
    from cnn_rnn.training.stopping import stop_rule

    for key in ("seed", "model", "data", "optimizer", *POSITIVE_INTS):
        if key not in config:
            raise ConfigError(key, "missing from the config")
    check_int("seed", config["seed"], 0, SEED_MAX)
    for key in POSITIVE_INTS:
        check_int(key, config[key], 1)
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
    check_number("optimizer.learning_rate", opt.get("learning_rate"), strict=True)
    for key in ("grad_clip_norm", "weight_decay", "momentum"):
        check_number(f"optimizer.{key}", opt.get(key, 0.0))
    if "decay" in opt:  # RMSprop's squared-gradient average
        check_number("optimizer.decay", opt["decay"], below=1.0)
    if "warmup_steps" in opt and check_int("optimizer.warmup_steps", opt["warmup_steps"],
                                           0) > config["steps"]:
        log.warning("optimizer.warmup_steps=%d is longer than the run (steps=%d): the learning "
                    "rate never reaches its peak", opt["warmup_steps"], config["steps"])
    if "eval_batch_size" in config:  # 0 (or absent): a default larger than batch_size
        check_int("eval_batch_size", config["eval_batch_size"], 0)
    policy = config.get("on_nonfinite", "stop")
    if policy not in NONFINITE_POLICIES:
        raise ConfigError("on_nonfinite",
                          f"unknown {policy!r}; accepted: {', '.join(NONFINITE_POLICIES)}")
    stop_rule(config)  # the optional early stop (cnn_rnn/training/stopping.py)
