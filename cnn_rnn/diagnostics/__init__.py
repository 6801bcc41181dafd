"""Diagnostics of gradient flow through time: the probe, its summaries and the ablation report.

Modules:
  gradient_flow   per-step ‖∂L/∂h_t‖ and ‖∂h_T/∂h_t‖ of any sequence model, in one backward pass
  profiles        decay rate and "steps in the past" of a gradient profile
  spectra         spectral radii of recurrent weight matrices
  ablation        probing a sweep's checkpoints and summarising the rows (used by
                  experiments/ablate.py); figures and report build on it
"""

from cnn_rnn.diagnostics.gradient_flow import (
    GradientFlow,
    gradient_flow,
    make_probe,
    state_gradients,
    state_hook,
)
from cnn_rnn.diagnostics.profiles import decay_rate, steps_in_the_past
from cnn_rnn.diagnostics.spectra import recurrent_spectral_radii

__all__ = [
    "GradientFlow",
    "decay_rate",
    "gradient_flow",
    "make_probe",
    "recurrent_spectral_radii",
    "state_gradients",
    "state_hook",
    "steps_in_the_past",
]
