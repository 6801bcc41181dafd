"""Benchmark cases: one model, one implementation, one shape, ready to run training steps.

Every implementation runs the same training step on the same data: many-to-one classification
of random inputs [B, T, D] into `num_classes` classes, softmax cross-entropy (mean over the
batch), gradients of everything, one Adam update. The implementations:

  "cnn_rnn"  a model of our registry (`build_model`), jitted with the parameters and optimizer
             state donated (updated in place, as a training loop would).
  "flax"     flax's built-in cells of the same size under `nn.RNN` (OptimizedLSTMCell, GRUCell,
             SimpleCell for lstm, gru, rnn) and a Dense head on the last step; jitted the same way.
  "torch"    PyTorch's nn.LSTM / nn.GRU / nn.RNN (tanh) and a Linear head, on CUDA when JAX's
             backend is a GPU and torch sees one, else on the CPU. Optional: only when torch is
             importable. Denormals are flushed to zero as XLA does on CPU (torch does not by
             default, and the vanishing gradients of a long BPTT make it 10x slower then), and
             its OpenMP threads sleep when idle (KMP_BLOCKTIME=0, OMP_WAIT_POLICY=PASSIVE,
             unless set), so that they do not spin on the cores of the rows timed in between.

The step here is deliberately minimal (no pmap, no metric bookkeeping): it is what the three
implementations have in common, so their times compare the recurrent layers themselves.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnn_rnn.benchmarking import timing
from cnn_rnn.benchmarking.case import Case, Prepared, case_spec, random_batch
from cnn_rnn.benchmarking.engine_cases import prepare_engine
from cnn_rnn.benchmarking.parallel_cases import prepare_parallel
from cnn_rnn.models.registry import build_model
from cnn_rnn.registry import accepted_kwargs
from cnn_rnn.training.parallel import BACKENDS
from cnn_rnn.training.state import param_count

# "pmap" and "jit": the training loop's step through that data-parallel backend (parallel_cases);
# "engine": a linear-recurrence scan engine alone, forward + backward (engine_cases);
# "stream" / "recompute": inference of one new step, by the carry or over the window again
# (streaming_cases).
IMPLS = ("cnn_rnn", "flax", "torch", "engine", "stream", "recompute", *BACKENDS)
OWN_OPTIONS = ("cnn_rnn", "engine", "stream", "recompute")  # impls that take our model options
ENGINE_MODELS = ("lru", "mingru")
FLAX_CELLS: dict[str, Callable[[int], nn.Module]] = {
    "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}
TORCH_LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def torch_available() -> bool:
    """Return whether PyTorch can be imported (the optional `bench` extra)."""
    return importlib.util.find_spec("torch") is not None


class FlaxBuiltin(nn.Module):
    """flax's own recurrent cell under `nn.RNN`, then a Dense head on the last step.

    Attributes:
      cell: "lstm", "gru" or "rnn" (see FLAX_CELLS).
      hidden: hidden size.
      num_outputs: classes.

    """

    cell: str
    hidden: int
    num_outputs: int

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False,
                 mask: jax.Array | None = None) -> jax.Array:
        """Return logits [B, num_outputs] for inputs [B, T, D]."""
        h = nn.RNN(FLAX_CELLS[self.cell](self.hidden))(inputs)
        return nn.Dense(self.num_outputs)(h[:, -1])


def build_module(case: Case) -> nn.Module:
    """Return the linen module of a JAX case ("cnn_rnn" from our registry, or "flax")."""
    if case.impl == "flax":
        return FlaxBuiltin(case.model, case.hidden, case.num_classes)
    spec = case_spec(case)
    kwargs = {"name": case.model, **case.options}
    if "hidden" not in kwargs and "hidden" in accepted_kwargs(build_model_class(case.model)):
        kwargs["hidden"] = case.hidden
    return build_model(kwargs, spec)


def build_model_class(name: str) -> Any:
    """Return the registered model class called `name` (ConfigError if unknown)."""
    from cnn_rnn.models.registry import MODELS, model_names

    model_names()  # imports every family, so that the registry is complete
    return MODELS.get(name)


def make_train_step(module: nn.Module, tx: optax.GradientTransformation,
                    has_batch_stats: bool) -> Callable[..., Any]:
    """Return step(params, opt_state, batch_stats, x, y) -> (params, opt_state, stats, loss)."""

    def step(params: Any, opt_state: Any, stats: Any, x: jax.Array,
             y: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
        def loss_fn(p: Any) -> tuple[jax.Array, Any]:
            variables = {"params": p, **({"batch_stats": stats} if has_batch_stats else {})}
            out = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                               mutable=["batch_stats"] if has_batch_stats else False)
            logits, updates = out if has_batch_stats else (out, {})
            ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
            return ce.mean(), updates.get("batch_stats", stats)

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, stats, loss

    return step


def prepare_jax(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Build, initialise and compile a JAX case; its step updates the state in place."""
    module = build_module(case)
    x, y = (jnp.asarray(a) for a in random_batch(case, seed))
    variables = module.init(jax.random.key(seed), x[:1], train=False)
    params, stats = variables["params"], variables.get("batch_stats", {})
    tx = optax.adam(learning_rate)
    state = [params, tx.init(params), stats]
    fn = make_train_step(module, tx, bool(stats))
    compiled, compile_s = timing.compile_timed(fn, *state, x, y, donate_argnums=(0, 1, 2))

    def step() -> None:
        *new_state, loss = compiled(*state, x, y)
        state[:] = new_state
        jax.block_until_ready((state, loss))

    return Prepared(step, compile_s, timing.peak_bytes(compiled), param_count(params))


def prepare_torch(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Build a PyTorch case (nn.LSTM/GRU/RNN + Linear, Adam), on CUDA if JAX runs on a GPU."""
    # OpenMP threads that spin for 200 ms after each parallel region (Intel OpenMP's default)
    # would steal the cores from the JAX rows timed in between; set before torch loads OpenMP.
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_flush_denormal(True)  # as XLA:CPU does; see the module docstring
    torch.manual_seed(seed)
    use_cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    layer_cls = getattr(torch.nn, TORCH_LAYERS[case.model])
    rnn = layer_cls(case.input_dim, case.hidden, batch_first=True).to(device)
    head = torch.nn.Linear(case.hidden, case.num_classes).to(device)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=learning_rate)
    x_np, y_np = random_batch(case, seed)
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).long().to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(head(out[:, -1]), y)
        loss.backward()
        opt.step()
        if use_cuda:
            torch.cuda.synchronize()

    threads = "" if use_cuda else f", {torch.get_num_threads()} threads"
    return Prepared(step, None, None, sum(p.numel() for p in params),
                    notes=f"torch {torch.__version__} on {device.type}{threads}")


def prepare(case: Case, learning_rate: float = 1e-3, seed: int = 0) -> Prepared:
    """Prepare any case (dispatch on `case.impl`)."""
    if case.impl == "torch":
        return prepare_torch(case, learning_rate, seed)
    if case.impl == "engine":
        return prepare_engine(case, learning_rate, seed)
    if case.impl in ("stream", "recompute"):
        # Imported here: streaming_cases builds its module with this file's build_module.
        from cnn_rnn.benchmarking.streaming_cases import prepare_streaming

        return prepare_streaming(case, learning_rate, seed)
    if case.impl in BACKENDS:
        return prepare_parallel(case, learning_rate, seed)
    return prepare_jax(case, learning_rate, seed)
