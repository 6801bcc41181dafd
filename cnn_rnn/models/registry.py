"""Builds a flax.linen model from `config.model` (name + kwargs) and the task it must solve.

Every registered model is a linen Module with a field `num_outputs` and a call signature
`model.apply(variables, inputs, train=bool, mask=None | bool[B, T])`. Models that can emit an
output per step have a field `return_sequences`; models with BatchNorm have a field `axis_name`
that the trainer sets to the pmap axis so that batch statistics are averaged across devices.
Encoder-decoders (seq2seq tasks) have a field `target_len`, the length of the sequence they emit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn

from cnn_rnn.errors import ConfigError
from cnn_rnn.registry import Keyword, Registry, accepted_kwargs
from cnn_rnn.task import TaskSpec

# The modules that register the built-in models (a new family module is added here).
FAMILY_MODULES = ("cnn", "rnn.models", "tcn", "transformer", "linear_recurrence", "hybrid",
                  "seq2seq", "linear_forecast", "speech")
# Set by `build_model` from the task and the trainer, never from config.model.
FIXED_FIELDS = ("num_outputs", "return_sequences", "target_len", "axis_name")
MODELS: Registry[nn.Module] = Registry("model", [f"cnn_rnn.models.{m}" for m in FAMILY_MODULES],
                                       reserved=FIXED_FIELDS)
register_model = MODELS.register


def build_model(model_config: Mapping[str, Any], spec: TaskSpec,
                axis_name: str | None = None) -> nn.Module:
    """The model named `model_config['name']` sized for `spec`.

    Args:
      model_config: `name` plus the model's own keyword arguments (None: the default).
      spec: the task; sets `num_outputs` and, for many-to-many tasks, `return_sequences=True`.
      axis_name: pmap axis for cross-device BatchNorm, passed to models that have the field.
    """
    name = model_config.get("name", "")
    cls = MODELS.get(name)
    fields = accepted_kwargs(cls)
    # None: the model's default (a config lists every field; those without one are None).
    kwargs = {k: v for k, v in dict(model_config).items() if k != "name" and v is not None}
    fixed: dict[str, Any] = {"num_outputs": spec.num_outputs}
    if (spec.kind == "seq2seq") != ("target_len" in fields):
        needs = "an encoder-decoder" if spec.kind == "seq2seq" else "a sequence model"
        raise ConfigError("model.name", f"{name!r} does not fit this {spec.kind} task, which "
                          f"needs {needs}; accepted: "
                          f"{', '.join(n for n in MODELS.names() if _fits(n, spec))}")
    if spec.kind == "seq2seq":
        fixed["target_len"] = spec.target_len
    if spec.many_to_many:
        if "return_sequences" not in fields:
            raise ConfigError(
                "model.name",
                f"{name!r} gives one output per sequence, but this task needs one per step; "
                f"accepted: {', '.join(n for n in MODELS.names() if _many_to_many(n))}",
            )
        fixed["return_sequences"] = True
    if "axis_name" in fields:
        fixed["axis_name"] = axis_name
    return MODELS.build(name, kwargs, **fixed)


def _many_to_many(name: str) -> bool:
    return "return_sequences" in accepted_kwargs(MODELS.get(name))


def _fits(name: str, spec: TaskSpec) -> bool:
    encoder_decoder = "target_len" in accepted_kwargs(MODELS.get(name))
    return encoder_decoder == (spec.kind == "seq2seq") and (
        not spec.many_to_many or _many_to_many(name))


def model_names() -> list[str]:
    """Every registered model name."""
    return MODELS.names()


def model_fields(name: str) -> dict[str, Keyword]:
    """The keyword arguments of model `name` that a config can set (all but FIXED_FIELDS)."""
    return MODELS.fields(name)
