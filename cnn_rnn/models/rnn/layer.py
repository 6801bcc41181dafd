"""The recurrent layer: a cell, stacked, optionally bidirectional, over masked sequences.

`RNN(cell)` runs any cell of `cells.py` (like `flax.linen.RNN(cell)`): each layer and direction
gets its own copy of the cell, named `layer{l}_fwd` / `layer{l}_bwd`, scanned over time by
`scan.run_cell` (or by cuDNN for cells with `supports_cudnn`). Layer l reads the states of layer
l-1; y_t = W_hy h_t^L + b_y is the same projection at every step.

Hidden-state hook: `hidden_states` returns every layer's states h_t, and an optional
`perturbations` argument adds an array p_t to h_t right after each step, before h_t feeds step
t+1 and the layer above. With p = 0 the output is unchanged and grad(loss)(p)[t] = dL/dh_t, which
is what the gradient-flow probe measures.

`dtype` sets the computation dtype (e.g. "bfloat16" on GPU/TPU); parameters stay float32 and the
outputs are cast back to the input dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.config_checks import check_choice, check_int, check_number, check_rate
from cnn_rnn.models.rnn import cudnn, parallel_in_time
from cnn_rnn.models.rnn.cells import RecurrentCell, Weights
from cnn_rnn.models.rnn.scan import (
    INPUT_PROJECTIONS,
    REMATS,
    flat_step,
    resolve_batch_groups,
    resolve_input_projection,
    resolve_remat,
    reverse_valid,
    run_cell,
)

Array = jax.Array
IMPLS = ("scan", "cudnn", *parallel_in_time.METHODS)
DTYPES = (None, "float32", "bfloat16", "float16")


class ScanOptions(nn.Module):
    """The options of a recurrent stack, declared once for every module that has them.

    The `RNN` layer reads them; the recurrent models and the CNN+RNN hybrid inherit them and pass
    them on with `scan_options()`. They are keyword-only, so that a subclass's own fields (the
    layer's `cell`, a model's `num_outputs`) stay first and positional; a subclass that changes a
    default redeclares the field as keyword-only.

    Attributes:
      num_layers: stacked layers; layer l reads the state sequence of layer l-1.
      bidirectional: also run each layer backwards (each sequence reversed within its valid
        length) and concatenate the two state sequences, [.., 2H].
      dropout: dropout rate on the state sequence between stacked layers.
      unroll: steps per scan iteration (speed/compile-time trade-off).
      remat: backward-pass rematerialisation, one of REMATS or a bool: "none", "step",
        "segments" or "auto" ("step" for gated cells on CPU; see `scan.resolve_remat`).
      remat_segment: steps per segment for remat="segments" (None = ceil(sqrt(T))).
      input_projection: "hoisted" (W_x x for all steps before the scan), "per_step" (inside the
        scan) or "auto" (per_step on CPU, hoisted on GPU/TPU); the results are the same.
      impl: "scan" (the cells under `jax.lax.scan`) or "cudnn" (cells with `supports_cudnn`, i.e.
        the LSTM, on CUDA GPUs; same parameters; unroll/remat/input_projection do not apply;
        calls with perturbations run the scan path, since cuDNN cannot inject them), or a
        Newton solver over all steps at once, "deer" or "quasi_deer" (`parallel_in_time`; same
        parameters and, at convergence, the same states; unroll/remat/input_projection/dtype do
        not apply). Each solve sows its iterations and converged flag into "intermediates".
      newton_tol, newton_max_iters: stop the Newton iterations at max |dh| < newton_tol, or
        after newton_max_iters (T always suffices in exact arithmetic).
      newton_on_failure: "fallback" (the sequential scan replaces an unconverged solve) or
        "error" (raise).
      newton_linear_solve: "auto" (each iteration's linear recurrence solved all at once) or
        "sequential" (by `lax.scan`: the same iterates; see `parallel_in_time.SolverOptions`).
      dtype: computation dtype (None = the inputs'), e.g. "bfloat16" on GPU/TPU; parameters
        stay float32 and states/outputs are returned in the inputs' dtype.
      batch_groups: run each step on this many slices of the batch (`scan.split_batch`), or
        "auto" (2 for the GRU on CPU at B >= 64, else 1); the results are the same.

    """

    _: dataclasses.KW_ONLY
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    unroll: int = 1
    remat: bool | str = "auto"
    remat_segment: int | None = None
    input_projection: str = "auto"
    impl: str = "scan"
    dtype: str | None = None
    batch_groups: int | str = "auto"
    newton_tol: float = 1e-5
    newton_max_iters: int = 100
    newton_on_failure: str = "fallback"
    newton_linear_solve: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_groups != "auto" and not (isinstance(self.batch_groups, int)
                                                and not isinstance(self.batch_groups, bool)
                                                and self.batch_groups >= 1):
            raise ValueError(f"batch_groups must be 'auto' or an integer >= 1, "
                             f"got {self.batch_groups!r}")
        check_int("model.num_layers", self.num_layers, 1)
        check_int("model.unroll", self.unroll, 1)
        check_rate("model.dropout", self.dropout)
        check_choice("model.input_projection", self.input_projection, INPUT_PROJECTIONS)
        if not isinstance(self.remat, bool):
            check_choice("model.remat", self.remat, REMATS)
        if self.remat_segment is not None:
            check_int("model.remat_segment", self.remat_segment, 1)
        check_choice("model.impl", self.impl, IMPLS)
        check_choice("model.dtype", self.dtype, DTYPES)
        check_number("model.newton_tol", self.newton_tol, strict=True)
        check_int("model.newton_max_iters", self.newton_max_iters, 1)
        check_choice("model.newton_on_failure", self.newton_on_failure,
                     parallel_in_time.ON_FAILURE)
        check_choice("model.newton_linear_solve", self.newton_linear_solve,
                     parallel_in_time.LINEAR_SOLVES)
        if self.impl == "cudnn":
            # At construction, so that a config asking for cuDNN without it fails at once.
            if self.dtype not in (None, "float32"):
                raise ValueError(f"impl='cudnn' computes in float32 only, got dtype={self.dtype!r}")
            cudnn.require_cudnn()
        super().__post_init__()

    @nn.nowrap
    def newton_options(self) -> parallel_in_time.SolverOptions:
        """Return the Newton solver's options (the method is `impl` when it names one)."""
        method = self.impl if self.impl in parallel_in_time.METHODS else "quasi_deer"
        return parallel_in_time.SolverOptions(method, self.newton_tol, self.newton_max_iters,
                                              self.newton_on_failure, self.newton_linear_solve)

    @nn.nowrap
    def scan_options(self) -> dict[str, Any]:
        """Return these options as keyword arguments of `RNN`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ScanOptions)
                if f.name not in ("parent", "name")}


class StatesHook(nn.Module):
    """`__call__` and `hidden_states` of a module with per-layer states, from one method.

    Subclasses (the RNN layer, the recurrent models, the CNN+RNN hybrid) implement
    `outputs_and_states(inputs, *, mask, train, perturbations) -> (outputs, states)`, the method
    the gradient-flow probe calls.
    """

    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return the outputs and the per-layer states [B, T, H*dirs] from one run."""
        raise NotImplementedError

    def __call__(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                 perturbations: Sequence[Array] | None = None) -> Array:
        """Return the outputs (see `outputs_and_states`)."""
        return self.outputs_and_states(inputs, mask=mask, train=train,
                                       perturbations=perturbations)[0]

    def hidden_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                      perturbations: Sequence[Array] | None = None) -> list[Array]:
        """Return every layer's states h_t, a list of [B, T, H*dirs] (zero on padded steps)."""
        return self.outputs_and_states(inputs, mask=mask, train=train,
                                       perturbations=perturbations)[1]


class RNN(ScanOptions, StatesHook):
    """A (stacked, optionally bidirectional) recurrent layer: any cell scanned over time.

        h_t^l = cell^l(h_{t-1}^l, h_t^{l-1}),  h_t^0 = x_t;   y_t = W_hy h_t^L + b_y

    Attributes:
      cell: a RecurrentCell, e.g. GRUCell(hidden=64); a template copied once per layer and
        direction, each copy with its own parameters named `layer{l}_fwd` / `layer{l}_bwd`.
      return_sequences: output y_t at every step [B, T, F] (many-to-many) instead of one output per
        sequence [B, F] read from the last valid step (many-to-one; for the backward direction, the
        state after reading the whole sequence backwards, i.e. at step 0).
      out_features: size F of the output projection y = W_hy h + b_y; None = no projection.
        `__call__` returns y [B, T, F] if return_sequences else [B, F] (F = out_features, or
        H*dirs); `hidden_states` every layer's h_t; see `outputs_and_states`.
      num_layers, bidirectional, dropout, unroll, remat, remat_segment, input_projection, impl,
        dtype, batch_groups: keyword-only, see `ScanOptions`.

    """

    # Its states are time-major [T, B, H]: per-example dropout keys go along axis 1.
    dropout_batch_axis: ClassVar[int] = 1
    cell: RecurrentCell
    return_sequences: bool = False
    out_features: int | None = None

    def __post_init__(self) -> None:
        if self.impl == "cudnn" and not self.cell.supports_cudnn:
            raise ValueError(f"impl='cudnn' supports LSTM cells only, got "
                             f"{type(self.cell).__name__}")
        super().__post_init__()

    @nn.compact
    def _run(self, inputs: Array, mask: Array | None, perturbations: Sequence[Array] | None,
             train: bool) -> tuple[list[Array], Array, Callable[[Array], Array]]:
        """Run the stack; return per-layer states, the final summary and the output projection.

        The states are time-major [T, B, H*dirs]; the summary [B, H*dirs] is each direction's state
        after its last valid step; the projection is the identity without `out_features`.
        """
        if perturbations is not None and len(perturbations) != self.num_layers:
            raise ValueError(f"perturbations: need one per layer ({self.num_layers}), "
                             f"got {len(perturbations)}")
        # Time-major once for the whole stack: scan slices the leading axis.
        dtype = inputs.dtype if self.dtype is None else jnp.dtype(self.dtype)
        x = jnp.swapaxes(inputs, 0, 1).astype(dtype)
        m = None if mask is None else jnp.swapaxes(mask.astype(bool), 0, 1)
        lengths = None if m is None else m.sum(axis=0)
        directions = ("fwd", "bwd") if self.bidirectional else ("fwd",)
        hoisted = resolve_input_projection(self.input_projection) == "hoisted"
        use_cudnn = self.impl == "cudnn" and perturbations is None
        cast = lambda a: a.astype(inputs.dtype)  # noqa: E731
        states, finals = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0.0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            cells = [self.cell.clone(parent=self, name=f"layer{layer}_{d}") for d in directions]
            weights = [jax.tree.map(lambda w: w.astype(dtype), cell.weights(x.shape[-1]))
                       for cell in cells]
            if use_cudnn:
                fused = [{k: jnp.concatenate(w[k], axis=-1) for k in ("W_x", "W_h", "b")}
                         for w in weights]
                x, final = cudnn.lstm_layer(x, lengths, fused, kernel=cudnn.require_cudnn())
                finals = [final]
            else:
                p = (None if perturbations is None else
                     jnp.swapaxes(perturbations[layer], 0, 1).astype(dtype))
                x, finals = self._scan_layer(cells, weights, x, m, lengths, p, hoisted, layer)
            states.append(cast(x))
        finals = [cast(f) for f in finals]
        project = lambda h: h  # noqa: E731
        if self.out_features is not None:
            # y = W_hy h + b_y, the same projection at every step.
            w_hy = self.param("W_hy", nn.initializers.lecun_normal(),
                              (x.shape[-1], self.out_features))
            b_y = self.param("b_y", nn.initializers.zeros_init(), (self.out_features,))
            project = lambda h: h @ w_hy + b_y  # noqa: E731
        return states, jnp.concatenate(finals, axis=-1), project

    @nn.nowrap
    def _scan_layer(self, cells: Sequence[RecurrentCell], weights: Sequence[Weights], x: Array,
                    m: Array | None, lengths: Array | None, perturbation: Array | None,
                    hoisted: bool, layer: int) -> tuple[Array, list[Array]]:
        """One layer, each direction (forward, then backward) scanned with `run_cell`.

        Or solved by Newton iterations (impl "deer"/"quasi_deer"), whose iterations and
        converged flag are sown as intermediates `newton_iterations` / `newton_converged` of
        the cell. Returns the time-major states [T, B, H*dirs] and each direction's final
        hidden state.
        """
        newton = self.impl in parallel_in_time.METHODS
        # Perturbations [T, B, H*dirs]: forward units first, in original time order.
        p_dirs = ([None] * len(cells) if perturbation is None else
                  jnp.split(perturbation, len(cells), -1))
        outs, finals = [], []
        for k, (cell, w, p) in enumerate(zip(cells, weights, p_dirs, strict=True)):
            # The second direction runs backwards: each sequence reversed within its length.
            flip = (lambda a: reverse_valid(a, lengths)) if k == 1 else (lambda a: a)
            if newton:
                hs, final, sol = parallel_in_time.run_cell_newton(
                    flat_step(cell), cell, cell.variables["params"], flip(x), m,
                    None if p is None else flip(p), self.newton_options())
                cell.sow("intermediates", "newton_iterations", sol.iterations)
                cell.sow("intermediates", "newton_converged", sol.converged)
                outs.append(flip(hs))
                finals.append(final)
                continue
            xs = cell.project(w, flip(x)) if hoisted else flip(x)
            carry, hs = run_cell(cell, w, xs, m, None if p is None else flip(p),
                                 projected=hoisted, unroll=self.unroll,
                                 remat=resolve_remat(self.remat, cell.num_gates),
                                 segment=self.remat_segment,
                                 batch_groups=resolve_batch_groups(self.batch_groups, cell,
                                                                   x.shape[1]))
            outs.append(flip(hs))
            finals.append(cell.hidden_of(carry))
        return jnp.concatenate(outs, axis=-1), finals

    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return what `__call__` and `hidden_states` return, from one run of the stack.

        Args:
          inputs: [B, T, D].
          mask: optional bool [B, T], True on real steps (right padding).
          train: enables dropout between layers.
          perturbations: optional list (one per layer) of [B, T, H*dirs] arrays added to h_t after
            each step, before h_t feeds the next step and the next layer; forward-direction units
            first. Zeros leave everything unchanged; their gradient is dL/dh_t.

        """
        states, final, project = self._run(inputs, mask, perturbations, train)
        states = [jnp.swapaxes(s, 0, 1) for s in states]
        return project(states[-1] if self.return_sequences else final), states
