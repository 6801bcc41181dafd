"""LSTM layers through cuDNN (`jax.experimental.rnn`), sharing the parameters of our LSTMCell.

Our LSTMCell stores, per layer and direction, W_x [D, 4H], W_h [H, 4H] and b [4H] with the gates
in the order (i, f, g, o). cuDNN (like PyTorch) uses the same gate order but stores the transposed
matrices W_ih [4H, D], W_hh [4H, H] and two biases b_ih, b_hh [4H], all packed into one flat
vector: first every pseudo-layer's (W_ih, W_hh), then every pseudo-layer's (b_ih, b_hh), with
pseudo-layers ordered layer 0 forward, layer 0 backward, layer 1 forward, ...
(see the `jax.experimental.rnn` module docstring). So

    W_ih = W_x^T,  W_hh = W_h^T,  b_ih = b,  b_hh = 0        and back:  b = b_ih + b_hh.

The conversion runs inside the jitted step (a few transposes and one concatenation), so the
parameters, checkpoints and optimizer state are those of the scan path: a model trained with
impl="cudnn" on a GPU can be evaluated with impl="scan" on a CPU, and the reverse.

cuDNN exists only on CUDA GPUs: `require_cudnn` raises a ValueError elsewhere (an explicit error
rather than a silent fallback, so that a benchmark row labelled cudnn is cuDNN). The pure-JAX
reference of the same semantics, `jax.experimental.rnn.lstm_ref`, runs on any backend; the tests
use it (kernel="reference") to check the packing and this layer's plumbing without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import rnn as jax_rnn

Array = jax.Array
CellParams = Mapping[str, Array]  # our fused LSTMCell parameters: "W_x", "W_h", "b"
KERNELS = ("cudnn", "reference")


def require_cudnn() -> str:
    """Return "cudnn" if the default backend can run cuDNN LSTMs, else raise a ValueError."""
    backend = jax.default_backend()
    version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    if backend != "gpu" or "rocm" in version:
        raise ValueError(
            f"impl='cudnn' needs a CUDA GPU with cuDNN (jax.experimental.rnn), but the default "
            f"backend is {backend!r}; use impl='scan' (same parameters)")
    return "cudnn"


def to_cudnn(layers: Sequence[CellParams]) -> Array:
    """Pack our per-pseudo-layer LSTM parameters into cuDNN's flat weight vector.

    Args:
      layers: one {"W_x", "W_h", "b"} dict per pseudo-layer, in cuDNN's order (layer 0 forward,
        layer 0 backward if bidirectional, layer 1 forward, ...).

    Returns:
      The flat float vector that `jax.experimental.rnn.lstm` takes as `weights`.

    """
    matrices = [m for p in layers for m in (p["W_x"].T, p["W_h"].T)]
    biases = [v for p in layers for v in (p["b"], jnp.zeros_like(p["b"]))]
    return jnp.concatenate([a.reshape(-1) for a in matrices + biases])


def from_cudnn(weights: Array, input_size: int, hidden_size: int, num_layers: int = 1,
               bidirectional: bool = False) -> list[dict[str, Array]]:
    """Unpack cuDNN's flat LSTM weights into our {"W_x", "W_h", "b"} dicts, one per pseudo-layer.

    The inverse of `to_cudnn` (b = b_ih + b_hh, so any weights cuDNN produced map to an
    equivalent LSTMCell).
    """
    expected = jax_rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
    if weights.shape != (expected,):
        raise ValueError(f"cuDNN LSTM weights: expected shape ({expected},) for input_size="
                         f"{input_size}, hidden_size={hidden_size}, num_layers={num_layers}, "
                         f"bidirectional={bidirectional}; got {weights.shape}")
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                         num_layers, bidirectional)
    return [{"W_x": w_ih[i].T, "W_h": w_hh[i].T, "b": b_ih[i] + b_hh[i]}
            for i in range(len(w_ih))]


def lstm_layer(x: Array, lengths: Array | None, directions: Sequence[CellParams], *,
               kernel: str = "cudnn") -> tuple[Array, Array]:
    """One (bi)directional LSTM layer over time-major x [T, B, D], as our scan layer computes it.

    Args:
      x: inputs, time-major [T, B, D] (float32).
      lengths: valid steps per sequence [B] (right padding), or None for all T.
      directions: our parameters for the forward direction, and the backward one if bidirectional.
      kernel: "cudnn" (`jax.experimental.rnn.lstm`, CUDA only) or "reference" (its pure-JAX
        reference `lstm_ref`, any backend; same semantics, for tests).

    Returns:
      The states [T, B, dirs*H] (zero on padded steps) and each direction's state after its last
      valid step [B, dirs*H] (for the backward direction, after reading back to step 0).

    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    t, b, d = x.shape
    h = directions[0]["W_h"].shape[0]
    bidirectional = len(directions) == 2
    seq_lengths = (jnp.full((b,), t, jnp.int32) if lengths is None
                   else lengths.astype(jnp.int32))
    zeros = jnp.zeros((len(directions), b, h), x.dtype)
    xb = jnp.swapaxes(x, 0, 1)  # cuDNN's entry point is batch-major
    weights = to_cudnn(directions)
    if kernel == "cudnn":
        y, h_n, _ = jax_rnn.lstm(xb, zeros, zeros, weights, seq_lengths, input_size=d,
                                 hidden_size=h, num_layers=1, dropout=0.0,
                                 bidirectional=bidirectional)
    else:
        unpacked = jax_rnn.unpack_lstm_weights(weights, d, h, 1, bidirectional)
        y, h_n, _ = jax_rnn.lstm_ref(xb, zeros, zeros, *unpacked, seq_lengths, d, h, 1, 0.0,
                                     bidirectional)
    y = jnp.swapaxes(y, 0, 1)
    if lengths is not None:
        # Our layer's contract: zero states on padded steps, whatever the kernel leaves there.
        y = jnp.where((jnp.arange(t)[:, None] < lengths[None, :])[..., None], y, 0.0)
    return y, jnp.concatenate(list(h_n), axis=-1)
