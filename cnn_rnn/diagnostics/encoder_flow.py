"""Gradient flow into an encoder-decoder's encoder: ‖∂L/∂h_t‖ for every encoder step t.

The recurrent encoder-decoder (`cnn_rnn.models.seq2seq.RecurrentSeq2Seq`) adds a perturbation
p_t to each encoder state h_t; at p = 0 nothing changes and ∂L/∂p_t = ∂L/∂h_t. The loss is the
teacher-forced training loss (the decoder reads the true previous tokens), each example's own
(`gradient_flow.state_gradients` with teacher forcing), so the profile shows how much of the
error signal reaches each source position. Without attention it can only arrive through the
final encoder state and must travel back step by step; with attention every h_t receives it
directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from cnn_rnn.diagnostics.gradient_flow import example_weights, state_gradients
from cnn_rnn.task import TaskSpec


def encoder_state_gradients(model: nn.Module, variables: Any, batch: Mapping[str, Any],
                            spec: TaskSpec) -> jax.Array:
    """Return ∂(Σ_b ℓ_b)/∂h_t of the encoder's (top-layer) states, [B, S, H]."""
    return state_gradients(model, variables, batch, spec, teacher_forcing=True)[-1]


def encoder_gradient_profile(model: nn.Module, variables: Any, batch: Mapping[str, Any],
                             spec: TaskSpec) -> np.ndarray:
    """Return mean_b ‖∂ℓ_b/∂h_{b,t}‖_2 for every encoder step t, [S] (real examples only)."""
    grads = encoder_state_gradients(model, variables, batch, spec)
    w = np.asarray(example_weights(batch))
    norms = np.linalg.norm(np.asarray(grads, np.float64), axis=-1)  # [B, S]
    return (norms * w[:, None]).sum(0) / max(w.sum(), 1e-12)
