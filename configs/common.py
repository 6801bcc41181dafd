"""Shared pieces of experiment configs: the standard fields and `key=value` argument parsing.

Every experiment config has: seed, steps, batch_size (global), eval_batch_size (0: a default
larger than batch_size), eval_every, checkpoint_every, keep_checkpoints, log_every, parallelism,
model (name + kwargs), data (name + kwargs) and optimizer (name, learning_rate, schedule,
warmup_steps, weight_decay, grad_clip_norm).

The cadence follows `steps` lazily (ml_collections FieldReferences): `--config.steps=600` moves
eval_every, checkpoint_every, log_every and optimizer.warmup_steps with it, unless a field is set
itself (on the command line, or given to `base_config`). `config.model` and `config.data` list
every keyword of the named model and source with its default (`section`, the one place where
this happens), typed, so that `--config.model.impl=quasi_deer` or `--config.data.split=...`
can set any of them.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections.config_dict import FieldReference

from cnn_rnn.data.registry import DATA
from cnn_rnn.models.registry import MODELS
from cnn_rnn.registry import Keyword, Registry
from cnn_rnn.training.config import OPTIMIZER_DEFAULTS, RUN_DEFAULTS


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


def _field(value: Any, keyword: Keyword | None) -> Any:
    """A config value typed as its keyword: None stays settable, a union takes any literal."""
    if keyword is None:  # not a keyword of the constructor: the registry will refuse it
        return value
    if value is None or keyword.kind is object:
        return FieldReference(value, field_type=keyword.kind)
    if keyword.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # so that `--config.model.dropout=0.1` parses as a float
    return value


def section(given: dict[str, Any], registry: Registry) -> ml_collections.ConfigDict:
    """`config.model` / `config.data`: the given fields, then the named constructor's others.

    Every other keyword of the named constructor is set at its default (`Registry.fields`), each
    typed for the command line.
    """
    name = given.get("name")
    fields = registry.fields(name) if name in registry.names() else {}
    out = ml_collections.ConfigDict()
    for key, value in given.items():
        out[key] = _field(value, fields.get(key))
    for key, keyword in fields.items():
        if key not in out:
            out[key] = _field(keyword.default, keyword)
    return out


def base_config(*, model: dict[str, Any], data: dict[str, Any], steps: int, batch_size: int,
                learning_rate: float, optimizer: str = "adamw",
                schedule: str = OPTIMIZER_DEFAULTS["schedule"],
                grad_clip_norm: float = OPTIMIZER_DEFAULTS["grad_clip_norm"],
                weight_decay: float = OPTIMIZER_DEFAULTS["weight_decay"],
                warmup_steps: int = OPTIMIZER_DEFAULTS["warmup_steps"],
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
    c.eval_batch_size = RUN_DEFAULTS["eval_batch_size"]
    total = c.get_ref("steps")
    c.eval_every = derived(total, a_fifth) if eval_every is None else eval_every
    c.checkpoint_every = (derived(total, a_fifth) if checkpoint_every is None
                          else checkpoint_every)
    c.keep_checkpoints = RUN_DEFAULTS["keep_checkpoints"]
    c.log_every = derived(c.get_ref("checkpoint_every"), log_cadence, total)
    # progress, parallelism ("pmap" | "jit": same results), on_nonfinite ("stop" | "skip").
    for key in ("progress", "parallelism", "on_nonfinite"):
        c[key] = RUN_DEFAULTS[key]
    c.model = section(model, MODELS)
    c.data = section(data, DATA)
    c.optimizer = ml_collections.ConfigDict(dict(
        name=optimizer, learning_rate=learning_rate, schedule=schedule,
        warmup_steps=derived(total, scaled, warmup_steps, steps) if warmup_steps else 0,
        weight_decay=weight_decay, grad_clip_norm=grad_clip_norm,
        momentum=0.9))  # the configs' choice for sgd / rmsprop (the loop's default is 0)
    return c


def _convert(key: str, value: str, default: Any) -> Any:
    """`value` as the type of `default` (bools from true/false/1/0); ValueError naming `key`."""
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        return value if default is None else type(default)(value)
    except ValueError:
        raise ValueError(f"config argument {key}={value!r} is not a "
                         f"{type(default).__name__}") from None


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """Parse a `configs/x.py:key=value,key=value` argument against typed defaults.

    A list argument (a tuple default) takes comma-separated values: `columns=a,b` (each word
    without '=' after it continues the list). Any other bare word sets the key `variant`
    (`configs/adding.py:cpu`). Unknown keys and values that do not convert to the default's type
    raise ValueError naming the key and the accepted choices.
    """
    out = dict(defaults)
    if not arg:
        return out
    listing = None  # the list argument that a bare word continues
    for part in arg.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep and listing is not None:
            element = defaults[listing][0] if defaults[listing] else ""
            out[listing] += (_convert(listing, key, element),)
            continue
        if not sep:
            key, value = "variant", key
        if key not in defaults:
            raise ValueError(f"config argument {key!r} unknown; accepted: {', '.join(defaults)}")
        default = defaults[key]
        listing = key if isinstance(default, tuple) else None
        if listing is None:
            out[key] = _convert(key, value, default)
        else:
            element = default[0] if default else ""
            out[key] = (_convert(key, value, element),) if value else ()
    return out
