"""Streaming inference: a sequence model fed one step at a time, equal to its full forward pass.

A streamable model has two pure methods (no hidden state: the carry is explicit):
  `model.init_carry(batch, features)`  the carry before the first step, for inputs x_t [B, D]
                                        with D = features (the zero state of every layer);
  `model.step(variables, carry, x_t, mask_t=None) -> (carry, y_t)`  one step, the same
                                        `variables` as `model.apply`.
y_t is what `model.apply` gives at step t: with `return_sequences`, its output at t; otherwise
the output it would give if the sequence ended at t (its many-to-one readout of the prefix).
`mask_t` (bool [B]) marks real steps, as the full pass's mask does.

Who streams: every recurrent model of `register_cell` (rnn, irnn, lstm, gru and new cells;
stacked, masked; `rnn/models.py`) from its carry, the linear recurrences (lru, mingru;
`linear_recurrence.py`) from each block's state, and the TCN (`tcn.py`) from a buffer per
convolution of the last (k-1)d inputs, so each step costs the same whatever the history. A
bidirectional model reads each sequence from its end, so it cannot stream; the Transformer would
need a key/value cache (not built: refused); see `require_streaming`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from cnn_rnn.errors import ConfigError

Array = jax.Array
Carry = Any


def streaming_models() -> list[str]:
    """The registered model names whose models can stream (for error messages and docs)."""
    from cnn_rnn.models.registry import MODELS, model_names

    return [n for n in model_names() if hasattr(MODELS.get(n), "step")
            and hasattr(MODELS.get(n), "init_carry")]


def require_streaming(model: Any, name: str = "") -> None:
    """Raise ConfigError (one line) unless `model` can run step by step."""
    name = name or type(model).__name__
    accepted = f"accepted: {', '.join(streaming_models())} (not bidirectional)"
    if getattr(model, "bidirectional", False):
        raise ConfigError("model.bidirectional", f"{name!r} is bidirectional: its backward "
                          "direction reads each sequence from its end, so it cannot run step by "
                          f"step; {accepted}")
    if not (hasattr(model, "step") and hasattr(model, "init_carry")):
        why = ("attention at step t reads the keys and values of every earlier step (a key/value "
               "cache is not built)") if "ransformer" in type(model).__name__ else (
               "it has no step-by-step form")
        raise ConfigError("model.name", f"{name!r} cannot stream: {why}; {accepted}")


def stream(model: Any, variables: Any, inputs: Array, mask: Array | None = None,
           carry: Carry | None = None) -> tuple[Carry, Array]:
    """Run `model.step` over inputs [B, T, D] under `jax.lax.scan`; return (carry, y [B, T, ...]).

    The reference use of the protocol (tests, benchmark, export); `carry` None starts from
    `model.init_carry`.
    """
    require_streaming(model)
    if carry is None:
        carry = model.init_carry(inputs.shape[0], inputs.shape[-1], inputs.dtype)
    xs = jnp.swapaxes(inputs, 0, 1)
    ms = None if mask is None else jnp.swapaxes(mask, 0, 1)

    def body(c: Carry, inp: tuple[Array, Array | None]) -> tuple[Carry, Array]:
        return model.step(variables, c, inp[0], inp[1])

    carry, ys = jax.lax.scan(body, carry, (xs, ms))
    return carry, jnp.swapaxes(ys, 0, 1)
