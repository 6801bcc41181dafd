"""The registered recurrent models: one cell, the `RNN` layer, and a projection to the outputs.

`register_cell(name, CellClass, **defaults)` is the whole of a model: it makes a RecurrentModel
whose fields are the cell's own (declared once, on the cell: `hidden`, `activation`, ...), the
layer's `ScanOptions` and `num_outputs` / `return_sequences`, registers it under `name` (for
`config.model.name`) and adds the cell to CELLS (for the CNN+RNN hybrid's `cell` option).
`defaults` change the default of a cell field or a scan option for this model only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_rnn.models import streaming
from cnn_rnn.models.registry import register_model
from cnn_rnn.models.rnn.cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from cnn_rnn.models.rnn.layer import RNN, ScanOptions, StatesHook

Array = jax.Array
Carry = Any

# name -> cell constructor with that model's cell defaults (hidden still to give).
CELLS: dict[str, Callable[..., RecurrentCell]] = {}
DEFAULT_HIDDEN = 128


class RecurrentModel(ScanOptions, StatesHook):
    """Base of the registered recurrent models: an RNN layer whose projection gives the outputs.

    Subclasses come from `register_cell`, which adds the cell's fields.

    Attributes:
      num_outputs: classes or regression targets (set from the task).
      return_sequences: one output per step (set for many-to-many tasks).
      num_layers, bidirectional, dropout, unroll, remat, remat_segment, input_projection, impl,
        dtype, batch_groups: the RNN layer's options, see `ScanOptions`.

    """

    num_outputs: int
    return_sequences: bool = False

    cell_type: ClassVar[type[RecurrentCell]] = RecurrentCell
    cell_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # Before ScanOptions' checks, which would first ask for cuDNN on this machine.
        if self.impl == "cudnn" and not self.cell_type.supports_cudnn:
            raise ValueError(f"impl='cudnn' exists for the lstm model only, not "
                             f"{type(self).__name__}; use impl='scan'")
        self.make_cell()  # the cell validates its own fields, at construction
        super().__post_init__()

    def make_cell(self) -> RecurrentCell:
        """Return this model's cell (an unbound template for the layer)."""
        return self.cell_type(**{f: getattr(self, f) for f in self.cell_fields}, parent=None)

    def setup(self) -> None:
        """Build the recurrent layer with an output projection to `num_outputs`."""
        self.rnn = RNN(self.make_cell(), return_sequences=self.return_sequences,
                       out_features=self.num_outputs, **self.scan_options())

    def outputs_and_states(self, inputs: Array, *, mask: Array | None = None, train: bool = False,
                           perturbations: Sequence[Array] | None = None
                           ) -> tuple[Array, list[Array]]:
        """Return the outputs and the per-layer hidden states from one run of the RNN."""
        return self.rnn.outputs_and_states(inputs, mask=mask, train=train,
                                           perturbations=perturbations)

    # --- streaming (see cnn_rnn/models/streaming.py) -------------------------------------------

    @nn.nowrap
    def init_carry(self, batch: int, features: int = 0, dtype: Any = jnp.float32) -> Carry:
        """The zero carry of every layer, for a batch of `batch` (`features` unused)."""
        del features
        streaming.require_streaming(self)
        cell = self.make_cell()
        return tuple(cell.initialize_carry(None, (batch, 1), dtype)
                     for _ in range(self.num_layers))

    @nn.nowrap
    def step(self, variables: Mapping[str, Any], carry: Carry, x_t: Array,
             mask_t: Array | None = None) -> tuple[Carry, Array]:
        """One step of the stack from x_t [B, D]: (new carry, y_t), as the full pass computes it.

        Each layer runs its cell's `step_input` (the equations the scan runs); on steps with
        mask_t False the carry is kept and the state passed up is zero, as in `scan.run_cell`.
        """
        streaming.require_streaming(self)
        params = variables["params"]["rnn"]
        cell = self.make_cell()
        dtype = x_t.dtype if self.dtype is None else jnp.dtype(self.dtype)
        keep = None if mask_t is None else mask_t.astype(bool)[:, None]
        x, new_carry = x_t.astype(dtype), []
        for layer, old in enumerate(carry):
            weights = jax.tree.map(lambda w: w.astype(dtype),
                                   cell.unpack(params[f"layer{layer}_fwd"]))
            old = jax.tree.map(lambda a: a.astype(dtype), old)
            new = cell.step_input(weights, old, x)
            x = cell.hidden_of(new)
            if keep is not None:
                new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)
                x = jnp.where(keep, x, 0.0)
            new_carry.append(new)
        h = x if self.return_sequences else cell.hidden_of(new_carry[-1])
        y = h.astype(x_t.dtype) @ params["W_hy"] + params["b_y"]
        return tuple(new_carry), y


def register_cell(name: str, cell_type: type[RecurrentCell], doc: str | None = None,
                  **defaults: Any) -> type[RecurrentModel]:
    """Register the recurrent model `name` built from `cell_type`; return its class.

    Args:
      name: the model's name in `config.model.name` and in CELLS.
      cell_type: a RecurrentCell subclass; each of its fields becomes a field of the model.
      doc: the model's docstring (default: the cell's).
      **defaults: new defaults of cell fields or scan options for this model (`hidden` defaults
        to DEFAULT_HIDDEN).

    """
    cell_fields = [f for f in dataclasses.fields(cell_type) if f.init
                   and f.name not in ("parent", "name")]
    names = {f.name for f in cell_fields}
    scan_names = {f.name for f in dataclasses.fields(ScanOptions)} - {"parent", "name"}
    unknown = set(defaults) - names - scan_names
    if unknown:
        raise ValueError(f"register_cell({name!r}): no field {sorted(unknown)}")
    defaults = {"hidden": DEFAULT_HIDDEN, **defaults}
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": doc or cell_type.__doc__,
                                 "cell_type": cell_type,
                                 "cell_fields": tuple(f.name for f in cell_fields)}
    for f in cell_fields:
        annotations[f.name] = f.type
        namespace[f.name] = defaults.get(f.name, f.default)
    for key in scan_names & set(defaults):  # keyword-only, like the option they redeclare
        annotations[key] = Any
        namespace[key] = dataclasses.field(default=defaults[key], kw_only=True)
    namespace["__annotations__"] = annotations
    model = type(f"{name.upper()}Model", (RecurrentModel,), namespace)
    CELLS[name] = functools.partial(cell_type, **{k: v for k, v in defaults.items()
                                                  if k in names and k != "hidden"})
    return register_model(name)(model)


RNNModel = register_cell("rnn", ElmanCell)
IRNNModel = register_cell(
    "irnn", ElmanCell, activation="relu", recurrent_init="identity",
    doc="IRNN (Le et al. 2015): an Elman RNN with ReLU and W_h initialised to identity_scale * I.")
# unroll=2: on CPU 0.9x the training-step time of unroll=1 at every shape measured for the LSTM;
# for the GRU, with batch_groups="auto", 0.80x flax's step time at B=64, T=200 against 0.88x.
LSTMModel = register_cell("lstm", LSTMCell, unroll=2)
GRUModel = register_cell("gru", GRUCell, unroll=2)
