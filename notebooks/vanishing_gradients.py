# %% [markdown]
# # Vanishing gradients: why a plain RNN forgets
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cnn-rnn/cnn_rnn/blob/main/notebooks/vanishing_gradients.ipynb)
#
# An Elman RNN applies the same step at every time $t$ (`ElmanCell` in
# `cnn_rnn/models/rnn/cells.py`):
#
# $$h_t = \tanh\left(W_{hh} h_{t-1} + W_{xh} x_t + b_h\right).$$
#
# Training differentiates through every step (backpropagation through time). The
# gradient of a loss read at the last step $T$ with respect to an earlier state is a
# product of one Jacobian per step:
#
# $$\frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial h_T}
# \prod_{s=t+1}^{T} \frac{\partial h_s}{\partial h_{s-1}}, \qquad
# \frac{\partial h_s}{\partial h_{s-1}} =
# \mathrm{diag}\left(1 - h_s^2\right) W_{hh}.$$
#
# If these factors shrink vectors by some $\gamma < 1$, the gradient reaching step $t$
# is about $\gamma^{T-t}$ times the gradient at the end: it **vanishes
# exponentially** with the distance $T - t$, a straight line on a log scale (Bengio et
# al. 1994; Pascanu et al. 2013). If they grow it, it explodes (gradient clipping
# helps there). Inputs far in the past then barely affect learning.
#
# Gated cells add a path along which the state is copied rather than squashed:
#
# * **LSTM** (`LSTMCell`): $c_t = f_t \odot c_{t-1} + i_t \odot g_t$,
#   $h_t = o_t \odot \tanh(c_t)$, with forget, input and output gates
#   $f_t, i_t, o_t = \sigma(W_x x_t + W_h h_{t-1} + b)$. Along the cell state,
#   $\partial c_t / \partial c_{t-1} \approx \mathrm{diag}(f_t)$: a forget gate
#   near 1 carries the gradient unchanged.
# * **GRU** (`GRUCell`): $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ with
#   update gate $z_t$ and candidate $n_t = \tanh(W_x^n x_t + r_t \odot (W_h^n
#   h_{t-1} + b_{hn}))$; $\partial h_t / \partial h_{t-1} \approx
#   \mathrm{diag}(z_t) + \dots$: an update gate near 1 copies the state.
#
# This notebook **measures** $\lVert \partial L / \partial h_t \rVert$ for a tanh-RNN,
# an LSTM and a GRU (1) at initialisation for growing sequence lengths, (2) trains them
# on the adding problem, and (3) measures again after training.

# %%
# On Colab, install the package (a minute); anywhere else this cell does nothing: install the
# repository yourself with `pip install -e .` from its root.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "cnn_rnn @ git+https://github.com/cnn-rnn/cnn_rnn"], check=True)

# %% [markdown]
# ## Setup
#
# The task is the **adding problem** (Hochreiter & Schmidhuber 1997; `adding` in
# `cnn_rnn/data/synthetic.py`): a sequence of $T$ random values in $[0, 1]$ with two
# of them marked; the target, read at the last step, is the sum of the two marked
# values. Always predicting 1 scores a mean squared error of **1/6**: a model that does
# not beat 1/6 has learnt nothing about the marked inputs. The three models get the
# same parameter budget (as in Bai et al. 2018, `configs/presets.py`), so the LSTM,
# with four gate matrices, has a smaller state than the tanh-RNN.

# %%
import functools
import os
from typing import Any

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from IPython.display import Markdown, display

from cnn_rnn.data.registry import build_data
from cnn_rnn.diagnostics import GradientFlow, gradient_flow, make_probe
from cnn_rnn.diagnostics.ablation import probe_batch
from cnn_rnn.diagnostics.profiles import by_distance
from cnn_rnn.models.registry import build_model
from cnn_rnn.notebook import notebook_settings
from cnn_rnn.tables import markdown_table
from cnn_rnn.training import load_run
from cnn_rnn.training.loop import to_dict, train_and_evaluate
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import create_train_state
from configs import adding
from configs.presets import model_config

# SIZE: "full" on a TPU or GPU, "small" on a CPU; WORKDIR: where runs are written
# (set CNN_RNN_NOTEBOOK_SIZE or CNN_RNN_NOTEBOOK_WORKDIR to choose).
SIZE, WORKDIR = notebook_settings("vanishing_gradients")

if SIZE == "small":  # about a minute on a 2-core CPU
    PROBE_LENGTHS = (10, 50, 100)  # sequence lengths probed at initialisation
    TRAIN_LENGTHS = (10, 50)  # sequence lengths trained on
    STEPS, BUDGET, NUM_EVAL = 300, 5_000, 256  # steps, parameters, test examples
else:  # minutes on a GPU or TPU
    PROBE_LENGTHS = (50, 200, 1000)
    TRAIN_LENGTHS = (25, 100, 200)
    STEPS, BUDGET, NUM_EVAL = 3_000, 20_000, 1000
ARCHS = {"rnn": "tanh-RNN", "lstm": "LSTM", "gru": "GRU"}
BASELINE = 1 / 6


def experiment(arch: str, length: int) -> ml_collections.ConfigDict:
    """configs/adding.py for `arch` at sequence length `length`, sized by SIZE."""
    config = adding.get_config(f"model={arch},T={length},variant=cpu,steps={STEPS}")
    config.model = model_config(arch, budget=BUDGET, input_dim=2, outputs=1, tcn={})
    config.data.num_eval = NUM_EVAL
    config.eval_every = config.checkpoint_every = STEPS  # test MSE at the end
    config.log_every = STEPS // 20  # training MSE every 5% of the run
    config.progress = False
    return config


for arch, label in ARCHS.items():
    print(f"{label:8s} {dict(experiment(arch, 10).model)}")
print(f"SIZE: {SIZE}; probe lengths {PROBE_LENGTHS}, training lengths {TRAIN_LENGTHS}, "
      f"{STEPS} steps; runs in {WORKDIR}")

# %% [markdown]
# ## 1. The gradient-flow probe, at initialisation
#
# `cnn_rnn.diagnostics.make_probe(model, spec)` measures, in one backward pass, the
# gradient of each example's loss with respect to every hidden state,
# $g_t = \lVert \partial L / \partial h_t \rVert_2$ (averaged over the batch). It
# uses the models' perturbation hook: a zero array $p_t$ is added to $h_t$ right after
# step $t$; since $p = 0$ changes nothing, $\partial L / \partial p_t =
# \partial L / \partial h_t$. The probe is compiled once per model and length, and
# reused below for the trained parameters.
#
# We probe the parameters that training starts from (`create_train_state` with the
# config's seed, exactly as `train_and_evaluate` builds them) on the first examples of
# the fixed evaluation set.

# %%
setups = {}  # (arch, length) -> model, data, compiled probe, probe batch, initial state


def setup(arch: str, length: int) -> dict[str, Any]:
    """Build (once) the model, data, initial state and compiled probe of one experiment."""
    if (arch, length) not in setups:
        cfg = to_dict(experiment(arch, length))
        data = build_data(cfg["data"], seed=cfg["seed"])
        model = build_model(cfg["model"], data.spec)
        tx = build_optimizer(cfg["optimizer"], cfg["steps"])
        # The train state training starts from: same function, same seed (jitted: fast).
        init = functools.partial(create_train_state, model, tx, data.spec.input_shape)
        setups[arch, length] = dict(
            model=model, data=data, batch=probe_batch(data, 32),
            probe=make_probe(model, data.spec, num_probes=1),
            state0=jax.jit(init)(jax.random.PRNGKey(cfg["seed"])))
    return setups[arch, length]


def measure(arch: str, length: int, variables: dict[str, Any]) -> GradientFlow:
    """The probe's GradientFlow for these parameters on the probe batch."""
    s = setup(arch, length)
    return gradient_flow(s["model"], variables, s["batch"], s["data"].spec,
                         key=jax.random.PRNGKey(0), num_probes=1, probe=s["probe"])


at_init = {(arch, length): measure(arch, length, setup(arch, length)["state0"].variables())
           for arch in ARCHS for length in PROBE_LENGTHS}

fig, axes = plt.subplots(1, len(ARCHS), figsize=(4.2 * len(ARCHS), 3.4), sharey=True)
colours = plt.cm.viridis(np.linspace(0.0, 0.8, len(PROBE_LENGTHS)))
for ax, (arch, label) in zip(axes, ARCHS.items(), strict=True):
    for colour, length in zip(colours, PROBE_LENGTHS, strict=True):
        g = by_distance(at_init[arch, length].grad_norm[0])  # index k = T - 1 - t
        ax.semilogy(np.arange(length), np.where(g > 0, g, np.nan), color=colour,
                    label=f"T = {length}")
    ax.set(title=f"{label} at initialisation", xlabel="distance from the last step, T-1-t")
axes[0].set_ylabel(r"$\|\partial L / \partial h_t\|$")
axes[0].legend()
fig.tight_layout()
plt.show()

rows = []
for (arch, length), flow in at_init.items():
    g = flow.grad_norm[0]
    rows.append(dict(model=ARCHS[arch], T=length, decay=flow.decay_rate[0],
                     reach=flow.steps_in_the_past[0], ratio=float(g[0] / g[-1])))
display(Markdown(markdown_table(rows, [
    ("model", "model"), ("T", "T"), ("decay (decades per step)", "decay"),
    ("steps back within 1e-3 of the end", "reach"), ("g(first) / g(last)", "ratio")])))

# %% [markdown]
# **What you see.** Each profile is (close to) a straight line on the log scale: the
# gradient shrinks by a constant factor per step, exponential decay. The slope is a
# property of the cell and its weights, not of $T$, so a longer sequence pushes its
# first steps exponentially further down: `g(first) / g(last)` falls by orders of
# magnitude as $T$ grows, and "steps back within 1e-3" stops growing with $T$.
#
# Note that **at initialisation the gates are no cure**: the GRU's update gate starts
# near $z_t = \sigma(0) = 1/2$, so its copy path alone halves the gradient every step,
# and the LSTM's forget gate starts near $\sigma(1) \approx 0.73$ (`forget_bias=1`).
# What gates add is that the decay is *learnable*: training can push $f_t$ or $z_t$
# towards 1 where the task needs memory, while the tanh-RNN's only knob is $W_{hh}$,
# whose growth quickly leads to exploding gradients instead.
#
# ## 2. Training on the adding problem
#
# Each model trains for a short run at each training length with Adam and gradient
# clipping (`configs/adding.py`). The fixed evaluation set gives the test MSE at the
# end; every training batch is freshly drawn, so the training MSE logged along the way
# (`metrics.jsonl`) is an unbiased estimate of it.

# %%
results = {}
for length in TRAIN_LENGTHS:
    for arch in ARCHS:
        workdir = os.path.join(WORKDIR, f"{arch}_T{length}")
        results[arch, length] = train_and_evaluate(experiment(arch, length), workdir)

fig, (ax_len, ax_curve) = plt.subplots(1, 2, figsize=(11, 3.8))
for arch, label in ARCHS.items():
    losses = [results[arch, length]["eval"]["loss"] for length in TRAIN_LENGTHS]
    line, = ax_len.semilogy(TRAIN_LENGTHS, losses, "o-", label=label)
    train = read_metrics(os.path.join(WORKDIR, f"{arch}_T{max(TRAIN_LENGTHS)}"), "train")
    ax_curve.semilogy([r["step"] for r in train], [r["loss"] for r in train],
                      color=line.get_color(), label=label)
for ax in (ax_len, ax_curve):
    ax.axhline(BASELINE, color="grey", ls="--", label="predict 1: MSE 1/6")
ax_len.set(xlabel="sequence length T", ylabel="test MSE", title="after training")
ax_curve.set(xlabel="step", ylabel="training MSE (fresh batches)",
             title=f"learning curves at T = {max(TRAIN_LENGTHS)}")
ax_len.legend()
fig.tight_layout()
plt.show()


def verdict(loss: float) -> str:
    """Solved below a tenth of the baseline, failed above half of it."""
    return ("solved" if loss < 0.1 * BASELINE else "fails" if loss > 0.5 * BASELINE
            else "partly")


display(Markdown(markdown_table(
    [dict(model=ARCHS[a], T=t, params=s["params"], loss=s["eval"]["loss"],
          ratio=s["eval"]["loss"] / BASELINE, verdict=verdict(s["eval"]["loss"]))
     for (a, t), s in results.items()],
    [("model", "model"), ("T", "T"), ("parameters", "params"), ("test MSE", "loss"),
     ("MSE / baseline", "ratio"), ("", "verdict")])))

# %% [markdown]
# **Where each fails.** On short sequences every model solves the task: the marked
# values are only a few steps back. As $T$ grows, the tanh-RNN is the first to stay at
# the baseline: the error signal from the last step reaches the marked positions
# attenuated by many orders of magnitude (section 1), so it learns to output the mean.
# The gated cells keep learning at lengths where the tanh-RNN has given up (Bai et al.
# 2018 report, at $T = 600$: GRU 5e-5, LSTM 0.164, tanh-RNN 0.177).
#
# ## 3. The gradient after training
#
# The same compiled probes, now on the trained parameters (restored from each run's
# final Orbax checkpoint), at the longest training length. Solid: at initialisation;
# dashed: after training.

# %%
LONG = max(TRAIN_LENGTHS)


def trained_variables(arch: str, length: int) -> dict[str, Any]:
    """The parameters of the finished run, from its newest checkpoint."""
    return load_run(os.path.join(WORKDIR, f"{arch}_T{length}")).variables


before = {arch: measure(arch, LONG, setup(arch, LONG)["state0"].variables()) for arch in ARCHS}
after = {arch: measure(arch, LONG, trained_variables(arch, LONG)) for arch in ARCHS}

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for arch, label in ARCHS.items():
    line, = ax.semilogy(by_distance(before[arch].grad_norm[0]), label=f"{label}, init")
    ax.semilogy(by_distance(after[arch].grad_norm[0]), "--", color=line.get_color(),
                label=f"{label}, trained")
ax.set(xlabel="distance from the last step, T-1-t",
       ylabel=r"$\|\partial L / \partial h_t\|$",
       title=f"gradient reaching each step, T = {LONG}")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
for arch, label in ARCHS.items():
    decay_before, decay_after = before[arch].decay_rate[0], after[arch].decay_rate[0]
    print(f"{label:8s} decay {decay_before:+.3f} -> {decay_after:+.3f} "
          f"decades/step; spectral radii after training: "
          + ", ".join(f"{k.rsplit('/', 1)[-1]} {v:.2f}"
                      for k, v in after[arch].spectral_radius.items()))

# %% [markdown]
# **What you see.** Where a gated model solved the task, its trained profile is much
# flatter than at initialisation: the gates learnt to keep the state (and so the
# gradient) alive across the whole sequence. The tanh-RNN's profile still falls
# steeply, so the loss cannot reach the marked positions and training stalls at the
# baseline. The spectral radii of $W_h$ (per gate block) show what the weights did.
#
# To go further: `python -m experiments.ablate
# --config=configs/ablations/vanishing_gradients.py --workdir=DIR` runs this study over
# more architectures (IRNN, TCN, LRU), tasks (copy memory), lengths and seeds, with
# a report and figures.

# %% [markdown]
# ## 3b. The same products of Jacobians decide whether an RNN can be solved in parallel
#
# A recurrence $h_t = f(h_{t-1}, x_t)$ can also be solved for **all** $t$ at once by
# Newton's method (DEER, Lim et al. 2024; `impl="deer"` or `"quasi_deer"` on these
# models, `cnn_rnn/models/rnn/parallel_in_time.py`): linearise $f$ around a guess, solve
# the linear recurrence $h_t = J_t h_{t-1} + b_t$ with an associative scan, repeat. Its
# errors travel through the same products $\prod J_s$ as the gradients above: where they
# shrink (vanishing gradients, a negative largest Lyapunov exponent) a few iterations
# suffice; where they grow (exploding gradients, chaos) it needs up to $T$. Below, each
# cell at initialisation and after the training of section 2 (at $T$ = `LONG`, on 8
# probe examples), and the tanh-RNN with its recurrent weights scaled by 3; with each
# solver's largest state error and relative gradient error against the sequential scan.
# `python -m experiments.parallel_in_time --config=configs/ablations/parallel_in_time.py
# --workdir=DIR` runs the full grid: three tasks, T up to 1024
# (`docs/parallel_in_time/report.md`).

# %%
from cnn_rnn.diagnostics import newton

NEWTON = ml_collections.ConfigDict(dict(tol=1e-5, methods=("deer", "quasi_deer")))
newton_measures = {}  # arch -> compiled newton.make_measure at T = LONG


def newton_row(arch: str, stage: str, params: Any, scale: float = 1.0) -> dict[str, Any]:
    """Newton iterations and errors, decay rate and Lyapunov exponent of `params` at LONG."""
    s = setup(arch, LONG)
    if arch not in newton_measures:
        batch = {k: v[:8] for k, v in s["batch"].items()}
        newton_measures[arch] = newton.make_measure(s["model"], s["data"].spec, batch, NEWTON)
    measured = newton_measures[arch](newton.scale_recurrent(params, scale))
    return {"cell": ARCHS[arch], "stage": stage, "scale": scale, **measured}


newton_rows = [newton_row(arch, "init", setup(arch, LONG)["state0"].params) for arch in ARCHS]
newton_rows += [newton_row(arch, "trained", trained_variables(arch, LONG)["params"])
                for arch in ARCHS]
newton_rows.append(newton_row("rnn", "init", setup("rnn", LONG)["state0"].params, scale=3.0))
display(Markdown(markdown_table(newton_rows, [
    ("cell", "cell"), ("stage", "stage"), ("W_h scale", "scale"), ("T", "T"),
    ("Lyapunov exponent", "lyapunov"), ("gradient decay (decades/step)", "decay_rate"),
    *[(f"{name} {what}", f"{key}_{method}")
      for method, name in (("deer", "DEER"), ("quasi_deer", "quasi-DEER"))
      for what, key in (("iterations", "iterations"), ("state error", "state_error"),
                        ("gradient error", "grad_error"))]])))

# %% [markdown]
# ## 4. Checks

# %%
SHORT_PROBE, LONG_PROBE = min(PROBE_LENGTHS), max(PROBE_LENGTHS)
SHORT = min(TRAIN_LENGTHS)


def first_over_last(flow: GradientFlow) -> float:
    """Gradient norm at the first step over the norm at the last one."""
    g = flow.grad_norm[0]
    return g[0] / g[-1]


for arch, label in ARCHS.items():
    long_flow = at_init[arch, LONG_PROBE]
    # At initialisation every cell's gradient vanishes exponentially with distance...
    assert long_flow.decay_rate[0] < 0, f"{label}: gradient does not decay"
    assert first_over_last(long_flow) < 1e-3, f"{label}: gradient reaches step 0 intact"
    # ... so a longer sequence leaves far less gradient at its first step.
    assert first_over_last(long_flow) < first_over_last(at_init[arch, SHORT_PROBE]), label
    # Short sequences are learnt by everyone.
    loss = results[arch, SHORT]["eval"]["loss"]
    assert loss < 0.5 * BASELINE, f"{label} at T={SHORT}: MSE {loss:.4f} vs 1/6"

# At the longest length the tanh-RNN fails (near the 1/6 baseline) and a gated cell does better.
rnn_loss = results["rnn", LONG]["eval"]["loss"]
gated_loss = min(results[a, LONG]["eval"]["loss"] for a in ("lstm", "gru"))
assert rnn_loss > 0.5 * BASELINE, f"tanh-RNN at T={LONG}: MSE {rnn_loss:.4f} beat the baseline"
assert rnn_loss > gated_loss, (rnn_loss, gated_loss)
# After training, the tanh-RNN's gradient decays faster than the GRU's.
rnn_decay, gru_decay = after["rnn"].decay_rate[0], after["gru"].decay_rate[0]
assert rnn_decay < gru_decay, (rnn_decay, gru_decay)
# Newton's iterations follow the Jacobian products: the chaotic tanh-RNN needs more.
calm, chaotic = newton_rows[0], newton_rows[-1]
assert calm["lyapunov"] < 0 < chaotic["lyapunov"], (calm["lyapunov"], chaotic["lyapunov"])
# (Full-Jacobian DEER may not converge at all on the chaotic one: it falls back to the scan.)
assert calm["converged_deer"], newton_rows
assert not chaotic["converged_deer"] or calm["iterations_deer"] < chaotic["iterations_deer"]
assert calm["iterations_quasi_deer"] < chaotic["iterations_quasi_deer"], newton_rows
# Where the dynamics contract, both solvers converge to the scan's states and gradients.
for row in newton_rows:
    for method in NEWTON.methods if row["lyapunov"] < 0 else ():
        assert row[f"converged_{method}"], row
        assert row[f"state_error_{method}"] < 1e-4 and row[f"grad_error_{method}"] < 1e-3, row
print(f"OK: at T={LONG} the tanh-RNN stays at MSE {rnn_loss:.3f} (baseline {BASELINE:.3f}), "
      f"the best gated cell reaches {gated_loss:.4f}; trained decay per step: "
      f"tanh-RNN {rnn_decay:+.3f}, GRU {gru_decay:+.3f} decades")
