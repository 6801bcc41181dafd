"""Parallel-in-time solvability against vanishing gradients: one fact seen from two sides.

Newton's method solves h_t = f(h_{t-1}, x_t) for all t at once (`models/rnn/parallel_in_time`);
its errors propagate through the same products of Jacobians J_t = df/dh as the gradients of
backpropagation through time. So when those products shrink (gradients vanish, the largest
Lyapunov exponent is negative) Newton converges in a few iterations, and when they grow
(gradients explode, chaotic dynamics) it needs up to T iterations. For every point (arch x
recurrent-weight scale x length) this module measures, on one batch of the task, at
initialisation:

  iterations[method]  Newton iterations of "deer" and "quasi_deer" to max |dh| < tol (the model's
                      sown `newton_iterations` of layer 0, max_iters = T + 1: always converges in
                      exact arithmetic; `converged` says whether float32 did)
  decay_rate          the gradient-flow probe's slope of log10 ||dL/dh_t|| per step (decades per
                      step; negative = vanishing), `profiles.decay_rate`
  lyapunov            the largest Lyapunov exponent estimate of layer 0 along the sequential
                      trajectory: the mean log growth per step of a tangent vector pushed through
                      the J_t (renormalised every step), averaged over the batch (nats per step)

`scale` multiplies the recurrent weights W_h after initialisation (1 = the model's own init),
moving a cell from contracting to chaotic dynamics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_rnn.data.registry import build_data
from cnn_rnn.diagnostics import profiles
from cnn_rnn.diagnostics.ablation import probe_batch
from cnn_rnn.diagnostics.gradient_flow import gradient_flow
from cnn_rnn.diagnostics.report import table
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.rnn.scan import flat_step

Array = jax.Array
LAYER = "layer0_fwd"  # the bottom layer of the model's RNN submodule "rnn"


def lyapunov_exponent(step: Any, params: Any, xs: Array, h0: Array, key: Array) -> float:
    """Mean log growth per step of a random unit tangent vector through the J_t (nats/step).

    step(params, h [B, S], x_t [B, D]) -> h'; xs [T, B, D]; h0 [B, S]. The tangent is pushed
    through df/dh along the sequential trajectory (a jvp per step), renormalised every step.
    """
    v0 = jax.random.normal(key, h0.shape)
    v0 = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)

    def body(carry: tuple[Array, Array], x: Array) -> tuple[tuple[Array, Array], Array]:
        h, v = carry
        h_new, jv = jax.jvp(lambda u: step(params, u, x), (h,), (v,))
        norm = jnp.linalg.norm(jv, axis=-1, keepdims=True)
        return (h_new, jv / jnp.maximum(norm, 1e-30)), jnp.log(jnp.maximum(norm[:, 0], 1e-30))

    _, logs = jax.lax.scan(body, (h0, v0), xs)
    return float(jnp.mean(logs))


def scale_recurrent(params: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """Return params with every recurrent matrix W_h multiplied by `scale`."""
    def visit(tree: Any) -> Any:
        if isinstance(tree, Mapping):
            return {k: (v * scale if k == "W_h" else visit(v)) for k, v in tree.items()}
        return tree
    return visit(params)


def measure_point(arch: str, scale: float, length: int, config: Any) -> dict[str, Any]:
    """Iterations, gradient-decay rate and Lyapunov exponent of one (arch, scale, T)."""
    data = build_data({"name": config.task, "length": length}, config.seed)
    batch = probe_batch(data, config.batch_size)
    spec = data.spec
    options = {"name": arch, "hidden": config.hidden}
    model = build_model(options, spec)
    variables = model.init(jax.random.key(config.seed), jnp.asarray(batch["inputs"]))
    variables = {"params": scale_recurrent(variables["params"], scale)}
    flow = gradient_flow(model, variables, batch, spec, key=jax.random.key(1), num_probes=2)
    row: dict[str, Any] = {"arch": arch, "scale": scale, "T": length,
                           "decay_rate": profiles.decay_rate(flow.grad_norm[0])}
    cell = model.make_cell()
    xs = jnp.swapaxes(jnp.asarray(batch["inputs"]), 0, 1)
    h0 = cell.to_flat(cell.initialize_carry(None, (xs.shape[1], 1)))
    row["lyapunov"] = lyapunov_exponent(flat_step(cell), variables["params"]["rnn"][LAYER], xs, h0,
                                        jax.random.key(2))
    for method in config.methods:
        newton = build_model({**options, "impl": method, "newton_tol": config.tol,
                              "newton_max_iters": length + 1}, spec)
        _, inter = jax.jit(lambda v, x, m=newton: m.apply(v, x, mutable="intermediates"))(
            variables, jnp.asarray(batch["inputs"]))
        sown = inter["intermediates"]["rnn"][LAYER]
        row[f"iterations_{method}"] = int(sown["newton_iterations"][0])
        row[f"converged_{method}"] = bool(sown["newton_converged"][0])
    return row


def run(config: Any) -> list[dict[str, Any]]:
    """Measure every (arch, scale, T) of the config; return one row each."""
    return [measure_point(arch, float(scale), int(length), config)
            for arch in config.archs for scale in config.scales for length in config.lengths]


def correlation(rows: list[dict[str, Any]], x: str, y: str) -> float:
    """Spearman rank correlation of two columns over the rows where both are finite."""
    pairs = np.array([(r[x], r[y]) for r in rows
                      if np.isfinite(r[x]) and np.isfinite(r[y])], dtype=float)
    if len(pairs) < 3:
        return float("nan")
    ranks = np.argsort(np.argsort(pairs, axis=0), axis=0).astype(float)
    return float(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])


def plot(rows: list[dict[str, Any]], methods: Any, path: str) -> str:
    """Scatter Newton iterations / T against the Lyapunov exponent and the decay rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_rnn.diagnostics.figures import _save

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    markers = dict(zip(sorted({r["arch"] for r in rows}), "osD^v", strict=False))
    for ax, x, xlabel in ((axes[0], "lyapunov", "largest Lyapunov exponent (nats/step)"),
                          (axes[1], "decay_rate", "gradient decay rate (decades/step)")):
        for method, color in zip(methods, ("tab:blue", "tab:orange"), strict=False):
            for arch, marker in markers.items():
                pts = [(r[x], r[f"iterations_{method}"] / r["T"]) for r in rows
                       if r["arch"] == arch]
                ax.scatter(*zip(*pts, strict=True), marker=marker, color=color,
                           label=f"{arch} {method}", alpha=0.7)
        ax.set_xlabel(xlabel)
        ax.axvline(0.0, color="grey", lw=0.5)
    axes[0].set_ylabel("Newton iterations / T")
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def report(rows: list[dict[str, Any]], config: Any, command: str, figure: str) -> str:
    """The markdown report: the table of every point and sentences computed from it."""
    head = ["arch", "W_h scale", "T", "Lyapunov", "decay rate",
            *[f"{m} iters" for m in config.methods], *[f"{m} conv." for m in config.methods]]
    body = [[r["arch"], r["scale"], r["T"], r["lyapunov"], r["decay_rate"],
             *[r[f"iterations_{m}"] for m in config.methods],
             *[r[f"converged_{m}"] for m in config.methods]] for r in rows]
    lines = [f"# Newton iterations vs gradient decay and Lyapunov exponents ({config.task})", "",
             f"Generated by `{command}` (at initialisation, hidden={config.hidden}, batch="
             f"{config.batch_size}, tol={config.tol}, max_iters=T+1). See "
             "`cnn_rnn/diagnostics/newton.py` for the definitions.", "",
             table(head, body), ""]
    for m in config.methods:
        per_t = _per_t(rows, m)
        lines.append(f"- {m}: rank correlation of iterations/T with the Lyapunov exponent "
                     f"{correlation(per_t, 'lyapunov', 'its'):+.2f}, with the gradient "
                     f"decay rate {correlation(per_t, 'decay_rate', 'its'):+.2f}.")
        contracting = [r[f"iterations_{m}"] for r in rows if r["lyapunov"] < 0]
        chaotic = [r[f"iterations_{m}"] / r["T"] for r in rows if r["lyapunov"] > 0]
        if contracting:
            lines.append(f"  Where the Lyapunov exponent is negative ({len(contracting)} points) "
                         f"it took at most {max(contracting)} iterations.")
        if chaotic:
            lines.append(f"  Where it is positive ({len(chaotic)} points) it took "
                         f"{min(chaotic):.2f}-{max(chaotic):.2f} T iterations.")
    lines += ["", f"![iterations vs Lyapunov exponent and decay rate]({figure})", ""]
    return "\n".join(lines)


def _per_t(rows: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [{**r, "its": r[f"iterations_{method}"] / r["T"]} for r in rows]
