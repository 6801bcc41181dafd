"""Gradient-flow probe: how much of the loss gradient reaches each step of a sequence model.

For a model with per-layer states h^l_t [B, T, H_l] (an RNN's hidden states, an LRU's complex
states, a TCN block's output at step t), the probe adds a zero perturbation p^l_t to every state,
right where the state is produced, and differentiates with respect to p. Since p = 0 changes
nothing, ∂loss/∂p^l_t = ∂loss/∂h^l_t, for every layer and step, from ONE backward pass.

Two ways to place the perturbation, chosen per model (`state_hook`):
  * "perturbations": the model's own hook, `model.outputs_and_states(x, perturbations=[p^1..p^L])`
    (rnn, irnn, lstm, gru; lru, mingru; cnn_rnn_hybrid), which returns the outputs and the states
    from one run: p_t is added to h_t after step t, before h_t feeds step t+1 and the layer
    above.
  * "intercept": `flax.linen.intercept_methods` wraps `__call__` of the model's blocks (one
    TemporalBlock per TCN level, one EncoderBlock per Transformer layer) and adds p to each block's
    output [B, T, C]; no change to the model file is needed.

Quantities, all per layer l and absolute step t (distance from the end is T-1-t):
  grad_norm[l, t]     = mean_b ‖∂ℓ_b/∂h^l_{b,t}‖_2, the L2 norm over hidden units (|.| of complex
                        units, i.e. the norm over real and imaginary parts), averaged over the
                        real examples (weights > 0). ℓ_b is example b's own loss: the task loss
                        (MSE, or cross-entropy averaged over the example's counted steps) — the
                        training loss times the number of examples, so values do not shrink with
                        the batch size. Examples do not interact (train=False: no dropout, no
                        batch statistics), so one backward pass of Σ_b ℓ_b gives every ∂ℓ_b/∂h_b.
  jacobian_norm[l, t] = mean_b ‖∂h^L_{b,T}/∂h^l_{b,t}‖_F, the Frobenius norm of the Jacobian of
                        the top layer's state at example b's last valid step (real view: real and
                        imaginary parts stacked) with respect to h^l_t. Computed from K VJPs
                        vᵀJ: with v the K = dim(h^L) unit basis vectors, Σ_k ‖e_kᵀJ‖² = ‖J‖_F²
                        exactly (num_probes=None); with K Gaussian vectors v ~ N(0, I),
                        mean_k ‖vᵀJ‖² is an unbiased estimate of ‖J‖_F² (Hutchinson).
  state_norm[l, t]    = mean_b ‖h^l_{b,t}‖_2: exploding ReLU states show up here first.
  spectral_radius     = recurrent weight spectra from the parameters (see `spectra`).

Padded steps (mask False) get zero gradient. Profiles are indexed by the array's step t, so with
variable-length batches distances are measured from the array's end, not each sequence's.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_rnn.diagnostics import profiles
from cnn_rnn.diagnostics.spectra import recurrent_spectral_radii
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.losses import loss_and_metrics
from cnn_rnn.training.steps import model_inputs

Array = jax.Array
Batch = Mapping[str, Any]
ProbeFn = Callable[[Any, Batch, Array], dict[str, Array]]


def default_blocks(model: nn.Module) -> tuple[type[nn.Module], ...]:
    """Return the block classes whose outputs are the "states" of a non-recurrent model.

    TCN: each TemporalBlock (one per dilation level); Transformer: each EncoderBlock. Empty for
    other models.
    """
    from cnn_rnn.models import tcn, transformer  # late: model files are imported on demand

    table: dict[type, tuple[type[nn.Module], ...]] = {
        tcn.TCN: (tcn.TemporalBlock,),
        transformer.Transformer: (transformer.EncoderBlock,),
    }
    return next((blocks for cls, blocks in table.items() if isinstance(model, cls)), ())


def state_hook(model: nn.Module,
               blocks: Sequence[type[nn.Module]] | None = None) -> tuple[str, tuple[type, ...]]:
    """Return ("perturbations", ()) or ("intercept", block classes) for `model`.

    Args:
      model: a registered sequence model.
      blocks: block classes to intercept; overrides the model's own hook and `default_blocks`.

    Raises:
      ValueError: when the model has neither a perturbation hook nor known blocks.

    """
    if blocks:
        return "intercept", tuple(blocks)
    method = getattr(type(model), "outputs_and_states", None)
    if method is not None and "perturbations" in inspect.signature(method).parameters:
        return "perturbations", ()
    found = default_blocks(model)
    if not found:
        raise ValueError(f"{type(model).__name__} has no `perturbations` hook and no known blocks; "
                         "pass blocks=(BlockClass, ...) to probe the outputs of its blocks")
    return "intercept", found


def forward(model: nn.Module, variables: Any, batch: Batch,
            perturbations: Sequence[Array] | None,
            blocks: Sequence[type[nn.Module]] | None = None,
            extra: Mapping[str, Array] | None = None) -> tuple[Array, list[Array]]:
    """Return the model outputs and its per-layer states [B, T, H_l], perturbations added.

    Runs in evaluation mode (train=False). With `perturbations` None the states are unperturbed.
    `extra`: model inputs beyond inputs and mask (`training.steps.model_inputs`, e.g. a seq2seq
    model's targets for teacher forcing).
    """
    kind, block_types = state_hook(model, blocks)
    inputs, mask, extra = batch["inputs"], batch.get("mask"), extra or {}
    if kind == "perturbations":
        return model.apply(variables, inputs, train=False, mask=mask,
                           perturbations=perturbations, method="outputs_and_states", **extra)

    captured: list[Array] = []

    def interceptor(next_fun: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and isinstance(context.module, block_types):
            if perturbations is not None:
                out = out + perturbations[len(captured)]
            captured.append(out)
        return out

    with nn.intercept_methods(interceptor):
        outputs = model.apply(variables, inputs, train=False, mask=mask, **extra)
    return outputs, captured


def state_shapes(model: nn.Module, variables: Any, batch: Batch,
                 blocks: Sequence[type[nn.Module]] | None = None,
                 extra: Mapping[str, Array] | None = None) -> list[jax.ShapeDtypeStruct]:
    """Return the shape and dtype of every probed state, without running the model."""
    return jax.eval_shape(lambda v, b: forward(model, v, b, None, blocks, extra)[1], variables,
                          dict(batch))


def example_weights(batch: Batch) -> Array:
    """Return the batch's example weights [B] (1 for real examples, 0 for padding)."""
    w = batch.get("weights")
    return jnp.ones(batch["inputs"].shape[0], jnp.float32) if w is None else jnp.asarray(
        w, jnp.float32)


def summed_example_loss(spec: TaskSpec, outputs: Array, batch: Batch) -> tuple[Array, Array]:
    """Return (Σ_b ℓ_b, mean loss): the per-example losses' sum, and the training loss.

    ℓ_b = n · (the training loss's share of example b), n = number of real examples; for equal
    per-example counts (all our tasks) ℓ_b is example b's own mean loss.
    """
    loss_sum, metrics = loss_and_metrics(spec, outputs, dict(batch))
    count = jnp.maximum(metrics["loss"][1], 1e-12)
    return loss_sum * example_weights(batch).sum() / count, loss_sum / count


def state_gradients(model: nn.Module, variables: Any, batch: Batch, spec: TaskSpec,
                    blocks: Sequence[type[nn.Module]] | None = None, *,
                    teacher_forcing: bool = False) -> list[Array]:
    """Return ∂(Σ_b ℓ_b)/∂h^l_t for every layer: a list of [B, T, H_l] arrays (one backward pass).

    The raw gradients behind `grad_norm`; complex states get JAX's complex cotangents, whose
    moduli are those of the gradient with respect to the real and imaginary parts. Compiled with
    jax.jit on every call (a diagnostic, not a hot loop). With `teacher_forcing` the model reads
    what the training step gives it (a seq2seq model: the targets), so ℓ_b is the training loss.
    """

    def grads(v: Any, b: Batch) -> list[Array]:
        extra = model_inputs(spec, b, teacher_forcing)
        zeros = [jnp.zeros(s.shape, s.dtype) for s in state_shapes(model, v, b, blocks, extra)]

        def loss(ps: list[Array]) -> Array:
            outputs, _ = forward(model, v, b, ps, blocks, extra)
            return summed_example_loss(spec, outputs, b)[0]

        return jax.grad(loss)(zeros)

    return jax.jit(grads)(variables, dict(batch))


def last_states(states: Array, mask: Array | None) -> Array:
    """Return each example's state at its last valid step, [B, H] from [B, T, H]."""
    t = states.shape[1]
    last = jnp.full(states.shape[0], t - 1) if mask is None else t - 1 - jnp.argmax(
        jnp.asarray(mask, bool)[:, ::-1], axis=1)
    return states[jnp.arange(states.shape[0]), last]


def real_view(x: Array) -> Array:
    """Return x with real and imaginary parts stacked on the last axis (x itself if real)."""
    return jnp.concatenate([x.real, x.imag], axis=-1) if jnp.iscomplexobj(x) else x


def _sq_norm(x: Array) -> Array:
    return jnp.sum(jnp.abs(x) ** 2, axis=-1)


def _batch_mean(x: Array, w: Array) -> Array:
    """Weighted mean over axis -2 (the batch axis of [..., B, T])."""
    return jnp.einsum("...bt,b->...t", x, w) / jnp.maximum(w.sum(), 1e-12)


def make_probe(model: nn.Module, spec: TaskSpec, *, num_probes: int | None = 8,
               blocks: Sequence[type[nn.Module]] | None = None) -> ProbeFn:
    """Return a jit-compiled `probe(variables, batch, key) -> dict of arrays` for `model`.

    The dict holds: loss (scalar, the training loss), grad_norm, jacobian_norm, state_norm
    ([L, T] each; see the module docstring). The forward computation (one run of the model) is
    linearised once (`jax.vjp`) and pulled back once for grad_norm and K more times (vectorised)
    for jacobian_norm.

    Args:
      model: a sequence model (see `state_hook`).
      spec: the task, for the loss.
      num_probes: K Gaussian vectors for the Jacobian estimate; None = exact (K = dim h^L, the
        unit basis; memory grows with K).
      blocks: block classes to intercept instead of the model's own hook.

    """
    if num_probes is not None and num_probes < 1:
        raise ValueError(f"num_probes must be >= 1 or None, got {num_probes}")

    def probe(variables: Any, batch: Batch, key: Array) -> dict[str, Array]:
        shapes = state_shapes(model, variables, batch, blocks)
        zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        mask = batch.get("mask")

        def f(ps: list[Array]) -> tuple[tuple[Array, Array], tuple[Array, list[Array]]]:
            outputs, states = forward(model, variables, batch, ps, blocks)
            summed, mean = summed_example_loss(spec, outputs, batch)
            return (summed, real_view(last_states(states[-1], mask))), (mean, states)

        # Linearise once; pull back once for the loss, K times (vmapped) for the Jacobian rows.
        (_, h_last), vjp, (loss, states) = jax.vjp(f, zeros, has_aux=True)
        loss_grads = vjp((jnp.ones(()), jnp.zeros_like(h_last)))[0]
        if num_probes is None:
            dim = h_last.shape[-1]
            vs = jnp.broadcast_to(jnp.eye(dim, dtype=h_last.dtype)[:, None, :],
                                  (dim, *h_last.shape))
        else:
            vs = jax.random.normal(key, (num_probes, *h_last.shape), h_last.dtype)
        rows = jax.vmap(lambda v: vjp((jnp.zeros(()), v))[0])(vs)
        # Σ_k ‖v_kᵀJ‖² per (example, step); /K turns the Gaussian sum into the estimate of ‖J‖_F².
        scale = 1.0 if num_probes is None else 1.0 / num_probes
        w = example_weights(batch)
        return {
            "loss": loss,
            "grad_norm": _batch_mean(jnp.stack([jnp.sqrt(_sq_norm(g)) for g in loss_grads]), w),
            "jacobian_norm": _batch_mean(
                jnp.stack([jnp.sqrt(scale * _sq_norm(r).sum(axis=0)) for r in rows]), w),
            "state_norm": _batch_mean(jnp.stack([jnp.sqrt(_sq_norm(s)) for s in states]), w),
        }

    return jax.jit(probe)


@dataclasses.dataclass(frozen=True)
class GradientFlow:
    """What the probe measured on one batch (numpy arrays; see the module docstring).

    Attributes:
      loss: the training loss on the batch.
      grad_norm: mean_b ‖∂ℓ_b/∂h^l_t‖, [L, T].
      jacobian_norm: mean_b ‖∂h^L_T/∂h^l_t‖_F, [L, T].
      state_norm: mean_b ‖h^l_t‖, [L, T].
      spectral_radius: {"<path>/<gate>": ρ} of the recurrent weights.
      jacobian: how jacobian_norm was computed ("frobenius, exact" or a K-vector estimate).
      threshold: the relative level used by `steps_in_the_past`.

    """

    loss: float
    grad_norm: np.ndarray
    jacobian_norm: np.ndarray
    state_norm: np.ndarray
    spectral_radius: dict[str, float]
    jacobian: str
    threshold: float = profiles.DEFAULT_THRESHOLD

    @property
    def steps_in_the_past(self) -> list[int]:
        """Per layer: steps back the gradient stays >= threshold x its value at the last step."""
        return [profiles.steps_in_the_past(g, self.threshold) for g in self.grad_norm]

    @property
    def decay_rate(self) -> list[float]:
        """Per layer: slope of log10 grad_norm against distance (decades per step)."""
        return [profiles.decay_rate(g) for g in self.grad_norm]

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (floats and nested lists of them; non-finite values as None).

        Strict JSON has no NaN or Infinity (`json.dump` would write non-standard tokens), so
        every non-finite number, in arrays too, becomes None (null).
        """
        def clean(a: Any) -> Any:
            a = np.asarray(a, np.float64)
            return np.where(np.isfinite(a), a.astype(object), None).tolist()

        return {"loss": clean(self.loss), "grad_norm": clean(self.grad_norm),
                "jacobian_norm": clean(self.jacobian_norm), "state_norm": clean(self.state_norm),
                "spectral_radius": {k: clean(v) for k, v in self.spectral_radius.items()},
                "jacobian": self.jacobian, "threshold": self.threshold,
                "steps_in_the_past": self.steps_in_the_past, "decay_rate": clean(self.decay_rate)}


def gradient_flow(model: nn.Module, variables: Any, batch: Batch, spec: TaskSpec, *,
                  key: Array, num_probes: int | None = 8,
                  threshold: float = profiles.DEFAULT_THRESHOLD,
                  blocks: Sequence[type[nn.Module]] | None = None,
                  probe: ProbeFn | None = None) -> GradientFlow:
    """Probe `model` with `variables` on `batch`; see the module docstring for the quantities.

    Args:
      model: a sequence model (see `state_hook`).
      variables: its linen variables ({"params": ...}).
      batch: dict with inputs [B, T, D], targets and optionally mask, weights, target_weights.
      spec: the task (selects the loss).
      key: PRNG key for the Gaussian Jacobian probe vectors.
      num_probes: K for the Jacobian estimate; None = exact.
      threshold: relative level for `steps_in_the_past`.
      blocks: block classes to intercept instead of the model's own hook.
      probe: a `make_probe(model, spec, num_probes=num_probes, blocks=blocks)` result to reuse
        (saves recompiling across checkpoints); it must have been made with the same arguments.

    """
    fn = probe or make_probe(model, spec, num_probes=num_probes, blocks=blocks)
    out = jax.device_get(fn(variables, {k: jnp.asarray(v) for k, v in batch.items()}, key))
    how = "frobenius, exact" if num_probes is None else f"frobenius, {num_probes}-vector estimate"
    return GradientFlow(loss=float(out["loss"]), grad_norm=np.asarray(out["grad_norm"]),
                        jacobian_norm=np.asarray(out["jacobian_norm"]),
                        state_norm=np.asarray(out["state_norm"]),
                        spectral_radius=recurrent_spectral_radii(variables["params"]),
                        jacobian=how, threshold=threshold)
