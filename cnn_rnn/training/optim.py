"""Optimizers and learning-rate schedules from `config.optimizer`, all from optax."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.config import OPTIMIZER_DEFAULTS, OPTIMIZERS, SCHEDULES


def learning_rate_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Warmup (linear from 0) followed by a constant, cosine or linear decay to 0.

    The decay spans `total_steps` (the config's `steps`). Extending `steps` of an existing run
    therefore re-stretches the schedule from the resume point: the rate at step s follows the
    new total (the loop logs a warning when that happens).
    """
    cfg = {**OPTIMIZER_DEFAULTS, **cfg}
    lr = float(cfg["learning_rate"])
    warmup = int(cfg["warmup_steps"])
    name = cfg["schedule"]
    decay_steps = max(1, total_steps - warmup)
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps)
    elif name == "linear":
        main = optax.linear_schedule(lr, 0.0, decay_steps)
    else:
        raise ConfigError("optimizer.schedule",
                          f"unknown {name!r}; accepted: {', '.join(SCHEDULES)}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def build_optimizer(cfg: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """The optax chain: optional clipping by global norm, then the named optimizer.

    `weight_decay` is decoupled (AdamW-style) for adamw and added to the gradient (L2, as in the
    classic SGD recipes) for the others.
    """
    cfg = {**OPTIMIZER_DEFAULTS, **cfg}
    name = cfg.get("name", "")
    schedule = learning_rate_schedule(cfg, total_steps)
    wd = float(cfg["weight_decay"])
    if name == "adam":
        opt = optax.adam(schedule)
    elif name == "adamw":
        opt = optax.adamw(schedule, weight_decay=wd)
    elif name == "sgd":
        opt = optax.sgd(schedule, momentum=float(cfg["momentum"]) or None)
    elif name == "rmsprop":
        opt = optax.rmsprop(schedule, momentum=float(cfg["momentum"]))
    else:
        raise ConfigError("optimizer.name", f"unknown {name!r}; accepted: {', '.join(OPTIMIZERS)}")
    if wd > 0 and name != "adamw":
        opt = optax.chain(optax.add_decayed_weights(wd), opt)
    clip = float(cfg["grad_clip_norm"])
    # inject_hyperparams is avoided: the schedule is logged from the step count instead.
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
