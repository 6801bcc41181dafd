"""Shared pieces of experiment configs: the standard fields and `key=value` argument parsing.

Every experiment config has: seed, steps, batch_size (global), eval_every, checkpoint_every,
keep_checkpoints, log_every, model (name + kwargs), data (name + kwargs) and optimizer (name,
learning_rate, schedule, warmup_steps, weight_decay, grad_clip_norm).
"""

from __future__ import annotations

from typing import Any

import ml_collections


def base_config(*, model: dict[str, Any], data: dict[str, Any], steps: int, batch_size: int,
                learning_rate: float, optimizer: str = "adamw", schedule: str = "constant",
                grad_clip_norm: float = 0.0, weight_decay: float = 0.0, warmup_steps: int = 0,
                eval_every: int | None = None, checkpoint_every: int | None = None,
                seed: int = 0) -> ml_collections.ConfigDict:
    """A complete experiment config with the standard fields filled in."""
    c = ml_collections.ConfigDict()
    c.seed = seed
    c.steps = steps
    c.batch_size = batch_size
    c.eval_every = eval_every or max(1, steps // 5)
    c.checkpoint_every = checkpoint_every or max(1, steps // 5)
    c.keep_checkpoints = 3
    # The largest divisor of checkpoint_every that logs about 20 times a run (and at most every
    # 100 steps): a resumed run must log the same training windows as an uninterrupted one.
    target = max(1, min(100, steps // 20))
    c.log_every = max(d for d in range(1, target + 1) if c.checkpoint_every % d == 0)
    c.progress = True
    c.on_nonfinite = "stop"
    c.model = ml_collections.ConfigDict(model)
    c.data = ml_collections.ConfigDict(data)
    c.optimizer = ml_collections.ConfigDict(dict(
        name=optimizer, learning_rate=learning_rate, schedule=schedule,
        warmup_steps=warmup_steps, weight_decay=weight_decay, grad_clip_norm=grad_clip_norm,
        momentum=0.9))
    return c


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """Parse a `configs/x.py:key=value,key=value` argument against typed defaults.

    A bare word (no '=') sets the key `variant`. Unknown keys and values that do not convert to
    the default's type raise ValueError naming the key and the accepted choices.
    """
    out = dict(defaults)
    if not arg:
        return out
    for part in arg.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            key, value = "variant", key
        if key not in defaults:
            raise ValueError(f"config argument {key!r} unknown; accepted: {', '.join(defaults)}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = value.lower() in ("true", "1")
            elif default is None:
                out[key] = value
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise ValueError(f"config argument {key}={value!r} is not a "
                             f"{type(default).__name__}") from None
    return out
