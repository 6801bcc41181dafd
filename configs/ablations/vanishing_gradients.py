"""Vanishing and exploding gradients versus sequence length (adding and copy tasks).

    python -m experiments.ablate --config=configs/ablations/vanishing_gradients.py --workdir=DIR

Variants (`vanishing_gradients.py:smoke`): `smoke` (tanh-RNN and TCN on adding at T=6 and 12,
plus an IRNN with and without clipping; 24 steps: about a minute on a 2-core CPU), `default`
(tanh-RNN, IRNN, LSTM, GRU, TCN, LRU x adding and copy x 3 lengths, 500 steps, plus the clipping
comparison: about 8 minutes on a busy 2-core CPU), `full` (lengths up to T=1000, the parameter
budgets of Bai et al. 2018, minGRU too, 10k steps, 3 seeds: for a GPU/TPU), `paper` (the papers'
lengths, to T=1000 on adding and copy, six architectures at Bai et al.'s budgets, one seed, and a
budget rule instead of a fixed step count: each point trains until solved (eval loss < 1% of the
baseline), a plateau (no 1% improvement of its best eval loss for 5,000 steps) or divergence (a
non-finite eval loss, or over 1000x the baseline, at 3 evaluations in a row), at most 10,000 steps
(`stop`, cnn_rnn/training/stopping.py), evaluating every 250; the trained recurrent points at
T >= `newton.min_length` are also solved by DEER / quasi-DEER against their Lyapunov exponent.
Its cost: docs/ablation/paper_variant.md). Any field can be overridden, e.g.
`--config.seeds=3 --config.steps=2000`.

Two groups of points:
  main   task x arch x length x seed; Adam, gradient clipping at `clip_norm` (as the task configs).
  clip   each arch of clip.learning_rates x clip.lengths x seed on clip.task, with AND without
         clipping, trained with `clip.optimizer` (SGD, momentum 0.9: no Adam normalisation to hide
         the gradient's scale) at that arch's learning rate, chosen so that without clipping the
         gradients explode (default: IRNN 0.02, tanh-RNN 0.08 at T=50).
Every point uses on_nonfinite="skip", so a diverging run keeps going (its non-finite steps are
skipped and counted) and still produces results. Linear recurrences read out at the last step
(pool="last"), like the RNNs, so that their gradient reaches step t only through the recurrence.
Checkpoints are kept every steps/probe.checkpoints steps; the probe reads each of them.
"""

from typing import Any

import ml_collections

from cnn_rnn.models.tcn import receptive_field
from cnn_rnn.sweep import Point
from cnn_rnn.training.stopping import DIVERGED_RATIO
from configs.common import base_config
from configs.presets import model_config

# (channels per step, outputs, extra steps around the delay T, many-to-many)
TASKS = {"adding": (2, 1, 0, False), "copy": (10, 9, 20, True)}

VARIANTS = {
    "smoke": dict(
        tasks=("adding",), archs=("rnn", "tcn"), lengths=dict(adding=(6, 12), copy=(5,)),
        seeds=1, steps=24, batch_size=16, num_eval=32, budget=dict(adding=300, copy=600),
        tcn_hidden=dict(adding=6, copy=6), probe=dict(batch_size=8, num_probes=2, checkpoints=1),
        clip=dict(task="adding", lengths=(12,), learning_rates=dict(irnn=0.5))),
    "default": dict(
        tasks=("adding", "copy"), archs=("rnn", "irnn", "lstm", "gru", "tcn", "lru"),
        lengths=dict(adding=(10, 30, 100), copy=(5, 15, 40)), seeds=1, steps=500,
        batch_size=32, num_eval=256, budget=dict(adding=3000, copy=3000),
        tcn_hidden=dict(adding=16, copy=16),
        probe=dict(batch_size=32, num_probes=8, checkpoints=2),
        clip=dict(task="adding", lengths=(50,), learning_rates=dict(irnn=0.02, rnn=0.08))),
    "full": dict(
        tasks=("adding", "copy"), archs=("rnn", "irnn", "lstm", "gru", "tcn", "lru", "mingru"),
        lengths=dict(adding=(50, 100, 200, 400, 600, 1000), copy=(50, 100, 200, 500, 1000)),
        seeds=3, steps=10_000, batch_size=32, num_eval=1000,
        budget=dict(adding=70_000, copy=16_000), tcn_hidden=dict(adding=30, copy=12),
        tcn_kernel=7,
        probe=dict(batch_size=64, num_probes=16, checkpoints=5),
        clip=dict(task="adding", lengths=(100, 400),
                  learning_rates=dict(irnn=0.02, rnn=0.08))),
    "paper": dict(
        tasks=("adding", "copy"), archs=("rnn", "irnn", "lstm", "gru", "tcn", "lru"),
        lengths=dict(adding=(100, 200, 400, 600, 1000), copy=(100, 200, 500, 1000)),
        seeds=1, steps=10_000, batch_size=32, num_eval=1000,
        budget=dict(adding=70_000, copy=16_000), tcn_hidden=dict(adding=24, copy=12),
        tcn_kernel=8,
        probe=dict(batch_size=64, num_probes=16, checkpoints=5),
        stop=dict(solved_fraction=0.01, plateau_steps=5000, min_improvement=0.01,
                  diverged_ratio=DIVERGED_RATIO, diverged_evals=3),
        eval_every=250,
        newton=dict(min_length=600, batch_size=4, tol=1e-5, linear_solve="sequential"),
        clip=dict(task="adding", lengths=(), learning_rates={})),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The vanishing-gradients ablation of variant `arg` (`smoke`, `default`, `full`, `paper`)."""
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"config argument {variant!r} unknown; accepted: {', '.join(VARIANTS)}")
    v = VARIANTS[variant]
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.tasks = v["tasks"]
    c.archs = v["archs"]
    c.lengths = ml_collections.ConfigDict(v["lengths"])
    c.seeds = v["seeds"]
    c.steps = v["steps"]
    c.batch_size = v["batch_size"]
    c.learning_rate = 2e-3  # Adam, as configs/adding.py and configs/copy.py
    c.clip_norm = 1.0
    c.num_eval = v["num_eval"]
    c.budget = ml_collections.ConfigDict(v["budget"])  # parameters of each recurrent model
    # TCN channels per task: within the task's parameter budget, as the recurrent models
    c.tcn_hidden = ml_collections.ConfigDict(v["tcn_hidden"])
    c.tcn_kernel = v.get("tcn_kernel", 3)  # levels: the fewest whose receptive field covers T
    c.beat_ratio = 0.9  # "beats the baseline": eval loss < beat_ratio x baseline
    c.probe = ml_collections.ConfigDict(dict(
        threshold=1e-3, **v["probe"]))  # num_probes 0 = exact Jacobian norms
    c.clip = ml_collections.ConfigDict(dict(optimizer="sgd", **v["clip"]))  # arch -> lr
    if "stop" in v:  # the budget rule: train until solved or a plateau, at most `steps`
        c.stop = ml_collections.ConfigDict(v["stop"])
        c.eval_every = v["eval_every"]
        c.newton = ml_collections.ConfigDict(v["newton"])
    return c


def tcn_settings(c: ml_collections.ConfigDict, task: str) -> dict[str, Any]:
    """The TCN of a task: the fewest levels whose receptive field covers its longest sequence."""
    longest = max(c.lengths[task]) + TASKS[task][2]
    levels = 1
    while receptive_field(c.tcn_kernel, levels) < longest:
        levels += 1
    return dict(levels=levels, hidden=c.tcn_hidden[task], kernel_size=c.tcn_kernel, dropout=0.0)


def experiment(c: ml_collections.ConfigDict, task: str, arch: str, length: int, seed: int, *,
               optimizer: str, learning_rate: float,
               clip_norm: float) -> ml_collections.ConfigDict:
    """The experiment config of one point."""
    channels, outputs, _, many_to_many = TASKS[task]
    model = model_config(arch, budget=c.budget[task], input_dim=channels, outputs=outputs,
                         tcn=tcn_settings(c, task), many_to_many=many_to_many)
    if arch in ("lru", "mingru"):
        model["pool"] = "last"
    checkpoint_every = max(1, c.steps // c.probe.checkpoints)
    cfg = base_config(model=model, data=dict(name=task, length=length, num_eval=c.num_eval),
                      steps=c.steps, batch_size=c.batch_size, learning_rate=learning_rate,
                      optimizer=optimizer, grad_clip_norm=clip_norm, seed=seed,
                      eval_every=c.get("eval_every", checkpoint_every),
                      checkpoint_every=checkpoint_every)
    if "stop" in c:
        cfg.stop = ml_collections.ConfigDict(c.stop.to_dict())
    cfg.keep_checkpoints = c.probe.checkpoints + 1  # keep every one: each is probed
    cfg.on_nonfinite = "skip"
    cfg.progress = False
    return cfg


def get_points(c: ml_collections.ConfigDict) -> list[Point]:
    """The main points (task x length x arch x seed), then the clipping comparison's."""
    points = []
    for task in c.tasks:
        for length in c.lengths[task]:
            for arch in c.archs:
                for seed in range(c.seeds):
                    cfg = experiment(c, task, arch, length, seed, optimizer="adam",
                                     learning_rate=c.learning_rate, clip_norm=c.clip_norm)
                    points.append(Point(f"{task}_T{length}_{arch}_s{seed}", cfg, dict(
                        group="main", task=task, T=length, arch=arch, seed=seed, clip=True)))
    k = c.clip
    for length in k.lengths:
        for arch, lr in k.learning_rates.items():
            for seed in range(c.seeds):
                for clip in (True, False):
                    cfg = experiment(c, k.task, arch, length, seed, optimizer=k.optimizer,
                                     learning_rate=lr, clip_norm=c.clip_norm if clip else 0.0)
                    name = f"clip_{k.task}_T{length}_{arch}_{'on' if clip else 'off'}_s{seed}"
                    points.append(Point(name, cfg, dict(group="clip", task=k.task, T=length,
                                                        arch=arch, seed=seed, clip=clip, lr=lr)))
    return points


def cost_estimate(variant: str = "paper",
                  timing_steps: int = 5) -> dict[tuple[str, str], float]:
    """Measured step time of each (task, arch) at its longest length, and the variant's cost.

        python -c "from configs.ablations.vanishing_gradients import cost_estimate as e; e()"

    A step's cost grows linearly with T (every model here is linear in the sequence length), so
    a point at T costs T / T_max of the measured one. Prints one line per (task, arch) and the
    total: an upper bound (every point to `steps`) and the cost if every point stops at its
    earliest plateau (`stop.plateau_steps` after its first evaluation). Evaluations add about
    num_eval / batch_size / 3 steps each (forward passes); probes and Newton solves are not
    counted.
    """
    import os

    from cnn_rnn.training.throughput import step_seconds

    c = get_config(variant)
    load = os.getloadavg()
    per_step, upper, lower = {}, 0.0, 0.0
    evals = c.num_eval / c.batch_size / 3 / c.get("eval_every", c.steps)  # steps per step
    shortest = c.stop.plateau_steps + c.eval_every if "stop" in c else c.steps
    for task in c.tasks:
        longest = max(c.lengths[task])
        for arch in c.archs:
            cfg = experiment(c, task, arch, longest, 0, optimizer="adam",
                             learning_rate=c.learning_rate, clip_norm=c.clip_norm)
            seconds = step_seconds(cfg, steps=timing_steps)["seconds_per_step"]
            per_step[task, arch] = seconds
            total_t = sum(c.lengths[task]) / longest * c.seeds
            upper += seconds * total_t * c.steps * (1 + evals)
            lower += seconds * total_t * shortest * (1 + evals)
            print(f"{task} {arch} T={longest}: {seconds:.3g} s/step", flush=True)
    print(f"{variant}: {len(get_points(c))} points; at most {upper / 3600:.1f} h; "
          f"{lower / 3600:.1f} h if every point stops at its earliest plateau; load average "
          f"{[round(x, 1) for x in load]} before, {[round(x, 1) for x in os.getloadavg()]} after "
          f"on {os.cpu_count()} CPUs")
    return per_step
