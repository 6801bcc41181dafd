"""Optimizers and learning-rate schedules from `config.optimizer`, all from optax."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optax

from cnn_rnn.config_checks import check_int, check_number
from cnn_rnn.errors import ConfigError
from cnn_rnn.training.config import OPTIMIZER_DEFAULTS, OPTIMIZERS, SCHEDULES


def learning_rate_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Warmup (linear from 0) followed by a constant, cosine or linear decay to 0, or steps.

    "step" multiplies the rate by `decay_rate` every `decay_every` steps after the first
    `decay_begin` (the long-horizon forecasting recipe, LTSF-Linear's lradj "type1": epochs 1
    and 2 at the full rate, then halved each epoch, is decay_every = decay_begin = one epoch,
    decay_rate = 0.5). The other decays span `total_steps` (the config's `steps`): extending
    `steps` of an existing run re-stretches them from the resume point, the rate at step s
    following the new total (the loop logs a warning when that happens).
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
    elif name == "step":
        main = optax.exponential_decay(
            lr, transition_steps=check_int("optimizer.decay_every", cfg.get("decay_every"), 1),
            decay_rate=check_number("optimizer.decay_rate", cfg.get("decay_rate", 0.5),
                                    strict=True),
            transition_begin=check_int("optimizer.decay_begin", cfg.get("decay_begin", 0), 0),
            staircase=True)
    else:
        raise ConfigError("optimizer.schedule",
                          f"unknown {name!r}; accepted: {', '.join(SCHEDULES)}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def build_optimizer(cfg: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """The optax chain: optional clipping by global norm, then the named optimizer.

    `weight_decay` is decoupled (AdamW-style) for adamw and added to the gradient (L2, as in the
    classic SGD recipes) for the others. RMSprop takes `decay` (optax's 0.9 unless given; torch's
    `alpha` is 0.99) and `eps_in_sqrt` (optax's True; torch adds eps outside the square root).
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
        opt = optax.rmsprop(schedule, decay=float(cfg.get("decay", 0.9)),
                            eps_in_sqrt=bool(cfg.get("eps_in_sqrt", True)),
                            momentum=float(cfg.get("momentum", 0.0)))
    else:
        raise ConfigError("optimizer.name", f"unknown {name!r}; accepted: {', '.join(OPTIMIZERS)}")
    if wd > 0 and name != "adamw":
        opt = optax.chain(optax.add_decayed_weights(wd), opt)
    clip = float(cfg["grad_clip_norm"])
    # inject_hyperparams is avoided: the schedule is logged from the step count instead.
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
