"""The one home of config value checks; every failure is a `ConfigError` naming the full field.

Small checks of one value (`check_int`, `check_number`, `check_rate`, `check_choice`,
`check_int_tuple`) that data sources, models, the training config and the benchmark suite call
with the field's full dotted name. This module imports none of the layers that use it; the
checks of a whole run config live in `cnn_rnn/training/config.py`. A ConfigError is a
ValueError, so code that calls a model or source directly can still catch ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_rnn.errors import ConfigError

INT32_MAX = 2**31 - 1


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
