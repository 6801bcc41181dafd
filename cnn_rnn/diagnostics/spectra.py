"""Spectral radii of the recurrent weights: how a step scales the state it carries forward.

For a linearised step h_t ≈ W_h^T h_{t-1}, backpropagated gradients are multiplied by W_h once per
step, so their size over k steps goes like ρ(W_h)^k (ρ = spectral radius = max |eigenvalue|),
times the activation's derivative (< 1 for tanh away from 0, 0/1 for ReLU). ρ < 1 alone makes
gradients vanish; ρ > 1 lets them explode (Pascanu et al. 2013).

Read from the parameter tree, so it works for any model that names its weights like ours:
  * a 2-D "W_h" [H, G*H] (fused gate blocks, cnn_rnn.models.rnn.cells): one radius per gate block,
    named by the cell's gate order (Elman h; GRU r, z, n; LSTM i, f, g, o);
  * an LRU "nu_log" [N]: the largest |lambda| = exp(-exp(nu_log)) of the diagonal recurrence.
minGRU has no recurrent matrix (its decay 1 - z_t depends on the input) and a TCN none at all, so
they contribute nothing. Computed on the host with numpy (non-symmetric eigenvalues have no
accelerator kernel everywhere, and the matrices are small).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

GATE_NAMES: dict[int, tuple[str, ...]] = {1: ("h",), 3: ("r", "z", "n"), 4: ("i", "f", "g", "o")}
# The block that forms the new content of the state (the one the tanh/ReLU is applied to).
CANDIDATE_GATES = ("h", "n", "g", "lambda")


def spectral_radius(w: np.ndarray) -> float:
    """Return max |eigenvalue| of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))))


def recurrent_spectral_radii(params: Mapping[str, Any]) -> dict[str, float]:
    """Return {"<module path>/<gate>": spectral radius} for every recurrent matrix in `params`.

    Args:
      params: a linen "params" tree (nested dicts of arrays).

    """
    out: dict[str, float] = {}
    for path, value in traverse_util.flatten_dict(dict(params)).items():
        prefix, leaf = "/".join(path[:-1]), path[-1]
        value = np.asarray(value)
        if leaf == "W_h" and value.ndim == 2 and value.shape[1] % value.shape[0] == 0:
            h = value.shape[0]
            g = value.shape[1] // h
            names = GATE_NAMES.get(g, tuple(f"gate{i}" for i in range(g)))
            for i, name in enumerate(names):
                out[f"{prefix}/{name}"] = spectral_radius(value[:, i * h:(i + 1) * h])
        elif leaf == "nu_log":
            out[f"{prefix}/lambda"] = float(np.max(np.exp(-np.exp(value.astype(np.float64)))))
    return out


def candidate_radius(radii: Mapping[str, float]) -> float | None:
    """Return the largest radius among the candidate blocks (see CANDIDATE_GATES), or None."""
    values = [v for k, v in radii.items() if k.rsplit("/", 1)[-1] in CANDIDATE_GATES]
    return max(values) if values else None
