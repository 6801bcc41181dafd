"""Shared pieces of experiment configs: the standard fields and `key=value` argument parsing.

Every experiment config has: seed, steps, batch_size (global), eval_batch_size (0: a default
larger than batch_size), eval_every, checkpoint_every, keep_checkpoints, log_every, parallelism,
model (name + kwargs), data (name + kwargs) and optimizer (name, learning_rate, schedule,
warmup_steps, weight_decay, grad_clip_norm).

The cadence follows `steps` lazily (ml_collections FieldReferences): `--config.steps=600` moves
eval_every, checkpoint_every, log_every and optimizer.warmup_steps with it, unless a field is set
itself (on the command line, or given to `base_config`). `config.data` lists every keyword its
source takes; those not given are None (the source's default) and typed, so that
`--config.data.data_dir=...` can set them.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections.config_dict import FieldReference, placeholder

from cnn_rnn.data.registry import data_fields, data_names


def derived(ref: FieldReference, fn: Any, *args: Any) -> FieldReference:
    """A field computed as `fn(ref's value, *args)` each time it is read, until it is set itself.

    FieldReference's own operators (`ref // 5`, `ref + 1`, ...) are built on the same hook; this
    takes any function, such as `max` or a divisor search, that the operators cannot express.
    """
    return ref._apply_op(fn, *args)


def a_fifth(steps: int) -> int:
    """Evaluate and checkpoint five times a run."""
    return max(1, steps // 5)


def log_cadence(checkpoint_every: int, steps: int) -> int:
    """The largest divisor of checkpoint_every that logs about 20 times a run (at most every 100).

    A divisor keeps every log window inside one checkpoint interval. Resume no longer needs it
    (a checkpoint carries the open window), but it keeps the shipped configs' log_every, and so
    their published metrics, as they were.
    """
    target = max(1, min(100, steps // 20))
    return max(d for d in range(1, target + 1) if checkpoint_every % d == 0)


def scaled(steps: int, value: int, at_steps: int) -> int:
    """`value` (given for a run of `at_steps`) as the same fraction of a run of `steps`."""
    return value * steps // at_steps


def data_section(data: dict[str, Any]) -> ml_collections.ConfigDict:
    """`config.data`: the given fields, then every other keyword of the source as a typed None."""
    fields = data_fields(data["name"]) if data.get("name") in data_names() else {}
    section = ml_collections.ConfigDict()
    for key, value in data.items():
        section[key] = placeholder(fields[key]) if value is None and key in fields else value
    for key, field_type in fields.items():
        if key not in section:
            section[key] = placeholder(field_type)
    return section


def base_config(*, model: dict[str, Any], data: dict[str, Any], steps: int, batch_size: int,
                learning_rate: float, optimizer: str = "adamw", schedule: str = "constant",
                grad_clip_norm: float = 0.0, weight_decay: float = 0.0, warmup_steps: int = 0,
                eval_every: int | None = None, checkpoint_every: int | None = None,
                seed: int = 0) -> ml_collections.ConfigDict:
    """A complete experiment config with the standard fields filled in.

    eval_every and checkpoint_every default to a fifth of `steps`, log_every to about a twentieth
    (see `log_cadence`), and `warmup_steps` is given for a run of `steps`: all of them follow a
    later change of `steps` unless set themselves.
    """
    c = ml_collections.ConfigDict()
    c.seed = seed
    c.steps = steps
    c.batch_size = batch_size
    c.eval_batch_size = 0  # 0: large batches that fit (see cnn_rnn/data/pipeline.py)
    total = c.get_ref("steps")
    c.eval_every = derived(total, a_fifth) if eval_every is None else eval_every
    c.checkpoint_every = (derived(total, a_fifth) if checkpoint_every is None
                          else checkpoint_every)
    c.keep_checkpoints = 3
    c.log_every = derived(c.get_ref("checkpoint_every"), log_cadence, total)
    c.progress = True
    # Data-parallel backend: "pmap" (jax.pmap) or "jit" (jax.jit + NamedSharding); same results.
    c.parallelism = "pmap"
    c.on_nonfinite = "stop"
    c.model = ml_collections.ConfigDict(model)
    c.data = data_section(data)
    c.optimizer = ml_collections.ConfigDict(dict(
        name=optimizer, learning_rate=learning_rate, schedule=schedule,
        warmup_steps=derived(total, scaled, warmup_steps, steps) if warmup_steps else 0,
        weight_decay=weight_decay, grad_clip_norm=grad_clip_norm, momentum=0.9))
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
