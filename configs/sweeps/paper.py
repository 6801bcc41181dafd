"""Bai et al. 2018's Table 2 rows under the paper's protocol, ours beside theirs.

The adding problem at T = 600 and copy memory at T = 1000 (TCN, GRU, LSTM, tanh-RNN; hours on a
CPU), and sequential / permuted MNIST (the same four models; for a GPU/TPU).

    python -m experiments.sweep --config=configs/sweeps/paper.py --workdir=runs/paper
    python -m experiments.sweep --config=configs/sweeps/paper.py:mnist --workdir=runs/paper
    python -m experiments.sweep --config=configs/sweeps/paper.py:estimate --workdir=runs/paper

Variants: `synthetic` (default: the 8 adding/copy points), `mnist` (the 8 sMNIST/pMNIST points,
tfds `mnist` prepared once; `--config.data_dir=`), `all` (both), `estimate` (trains nothing: times
`timing_steps` training steps of all 16 points on this machine, writes the measurement to
`--config.throughput` and the table with a cost estimate for every row not yet run). Each point is
its task config's `variant=paper` (configs/bai2018.py; every setting against the authors' code in
docs/paper_protocol.md) plus the stop rule below, the same for every model of a task family.

The sweep is resumable (rerun the same command: finished points are skipped, an interrupted one
resumes from its last checkpoint, every `checkpoint_every` steps) and logs point i of n with an ETA.
The report `--config.report` (docs/results_paper.md) lists every row of the paper's table: the
finished ones with their number, steps and wall time, the others as not yet run with the estimate.

After a recurrent point has trained, its bottom layer is solved for all steps at once by DEER and
quasi-DEER (`--config.newton`, cnn_rnn/diagnostics/newton_points.py; cached in the point's
folder): Newton iterations against the Lyapunov exponent of networks trained at the paper's
lengths and sizes, in the report beside the table. `--config.newton.min_length=0` turns it off;
`--config.newton.linear_solve=auto` solves each iteration's linear recurrence by the parallel
associative scan instead of `lax.scan` (same iterations, O(T H^3) work per DEER iteration).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import TYPE_CHECKING, Any

import ml_collections

from cnn_rnn import paper_report
from cnn_rnn.data.registry import DATA
from configs import bai2018
from configs.adding import get_config as adding_config
from configs.common import section
from configs.copy import get_config as copy_config
from configs.pixels import get_config as pixels_config

if TYPE_CHECKING:  # imported where used: loading the config does not need the sweep runner
    from cnn_rnn.sweep import Point

# The table's rows: (task, model-config factory, eval metric, paper's unit per ours).
TASKS = ("adding", "copy", "smnist", "pmnist")
METRIC = dict(adding="loss", copy="loss", smnist="accuracy", pmnist="accuracy")
VARIANTS = dict(synthetic=("adding", "copy"), mnist=("smnist", "pmnist"), all=TASKS,
                estimate=())
# Solved: below 2.5e-4 x the trivial baseline (adding 4.2e-5, copy 5.1e-6), under the paper's best
# row of either task, so a stop never cuts a run short of the paper's numbers. Plateau: no 1%
# improvement of the best eval loss for 4,000 steps (a quarter of the budget). MNIST has no loss
# baseline: plateau only, over 5 epochs (its lr drops after 10 of 20).
STOP = dict(synthetic=dict(solved_fraction=2.5e-4, plateau_steps=4000, min_improvement=0.01),
            mnist=dict(solved_fraction=0.0, plateau_steps=4690, min_improvement=0.01))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The paper sweep of variant `arg`: `synthetic` (the default), `mnist`, `all` or `estimate`."""
    variant = arg or "synthetic"
    if variant not in VARIANTS:
        raise ValueError(f"config argument {variant!r} unknown; accepted: {', '.join(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.tasks = VARIANTS[variant]
    c.models = bai2018.MODELS
    c.lengths = ml_collections.ConfigDict(dict(adding=bai2018.TASKS["adding"]["T"],
                                               copy=bai2018.TASKS["copy"]["T"]))
    c.steps = 0  # 0: the paper's budget (the most a point may take)
    c.seed = 0
    c.stop = ml_collections.ConfigDict(STOP)
    c.eval_every = ml_collections.ConfigDict(dict(synthetic=250, mnist=938))  # MNIST: an epoch
    c.checkpoint_every = ml_collections.ConfigDict(dict(synthetic=1000, mnist=938))
    c.dataset = "mnist"
    c.data_dir = ml_collections.config_dict.placeholder(str)
    c.timing_steps = 10
    c.timing_tasks = TASKS  # which rows `estimate` times (with `models`)
    c.newton = ml_collections.ConfigDict(dict(min_length=600, batch_size=4, tol=1e-5,
                                              linear_solve="sequential"))
    c.report = "docs/results_paper.md"
    c.throughput = "docs/paper/throughput.json"
    return c


def family(task: str) -> str:
    """"synthetic" or "mnist": the stop rule and cadence a task follows."""
    return "mnist" if task in ("smnist", "pmnist") else "synthetic"


def experiment(c: ml_collections.ConfigDict, task: str, model: str) -> ml_collections.ConfigDict:
    """The experiment config of one (task, model) point."""
    common = f"model={model},variant=paper,steps={c.steps},seed={c.seed}"
    if task == "adding":
        cfg = adding_config(f"{common},T={c.lengths.adding}")
    elif task == "copy":
        cfg = copy_config(f"{common},T={c.lengths.copy}")
    else:
        order = "sequential" if task == "smnist" else "permuted"
        cfg = pixels_config(f"{common},dataset={c.dataset},order={order}")
        if c.data_dir:
            cfg.data.data_dir = c.data_dir
    fam = family(task)
    cfg.stop = ml_collections.ConfigDict(c.stop[fam].to_dict())
    cfg.eval_every = c.eval_every[fam]
    cfg.checkpoint_every = c.checkpoint_every[fam]
    cfg.log_every = min(100, cfg.eval_every)
    cfg.progress = False
    return cfg


def sequence_length(c: ml_collections.ConfigDict, task: str) -> int:
    """The task's T as the paper states it (copy: the blank stretch; MNIST: 784 pixels)."""
    return c.lengths.get(task, 28 * 28)


def after_point(point: Point, workdir: str, row: dict[str, Any],
                c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Newton solves of a trained recurrent point at T >= `c.newton.min_length` (else {})."""
    from cnn_rnn.diagnostics.newton_points import NewtonHook

    n = c.newton
    if not n.min_length:
        return {}
    length = sequence_length(c, row["task"])
    hook = NewtonHook.from_config(n.to_dict())
    extra = hook(point, workdir, {**row, "arch": row["model"], "T": length})
    return {**extra, "T": length} if extra else {}


def all_entries(c: ml_collections.ConfigDict) -> list[paper_report.Entry]:
    """Every row of the paper's table, run by this sweep or not."""
    entries = []
    for task in TASKS:
        for model in bai2018.MODELS:
            cfg = experiment(c, task, model)
            entries.append(paper_report.Entry(
                task=task, model=model, point=f"{task}_{model}_s{c.seed}", metric=METRIC[task],
                published=bai2018.PUBLISHED[task].get(model), max_steps=cfg.steps,
                eval_every=cfg.eval_every, batch_size=cfg.batch_size,
                eval_examples=10_000 if family(task) == "mnist" else 1000,
                scale=100.0 if METRIC[task] == "accuracy" else 1.0))
    return entries


def get_points(c: ml_collections.ConfigDict) -> list[Point]:
    """The points of the table's rows in `c.tasks` x `c.models`."""
    from cnn_rnn.sweep import Point

    return [Point(e.point, experiment(c, e.task, e.model), dict(task=e.task, model=e.model))
            for e in all_entries(c) if e.task in c.tasks and e.model in c.models]


def timing_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config whose step time is the point's.

    MNIST's shapes come from procedural 28x28 digits (the same [784, 1] inputs and 10 classes),
    which need no download.
    """
    if cfg.data.name != "mnist":
        return cfg
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.data = section(dict(name="digits", size=28, pixels=cfg.data.pixels), DATA)
    return cfg


def read_measured(path: str) -> dict[str, Any]:
    """The step-time measurements so far ({"points": {}} when there are none)."""
    if not os.path.exists(path):
        return {"points": {}}
    with open(path) as f:
        return json.load(f)


def measure(c: ml_collections.ConfigDict, path: str) -> dict[str, Any]:
    """Time the training step of every point of `timing_tasks` x `models` on this machine.

    Each point's measurement (with the load average around it) replaces its earlier one in
    `path`; the others are kept, so the rows can be measured a few at a time.
    """
    from cnn_rnn.training.throughput import step_seconds

    out = read_measured(path)
    out.update(cpus=os.cpu_count(), timing_steps=c.timing_steps,
               command="python -m experiments.sweep --config=configs/sweeps/paper.py:estimate "
                       "--workdir=DIR")
    for e in all_entries(c):
        if e.task not in c.timing_tasks or e.model not in c.models:
            continue
        before = os.getloadavg()[0]
        timed = step_seconds(timing_config(experiment(c, e.task, e.model)),
                             steps=c.timing_steps)
        out["points"][e.point] = dict(timed, date=time.strftime("%Y-%m-%d"),
                                      load_average=[round(before, 1),
                                                    round(os.getloadavg()[0], 1)])
        print(f"{e.point}: {timed['seconds_per_step']:.3g} s/step", flush=True)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
    return out


def write_report(rows: list[dict[str, Any]], workdir: str, c: ml_collections.ConfigDict) -> None:
    """Write `c.report` with its curves and Newton figure (`estimate`: timing first)."""
    measured = measure(c, c.throughput) if c.variant == "estimate" else read_measured(
        c.throughput)
    entries = all_entries(c)
    doc_dir = os.path.dirname(c.report) or "."
    figure = paper_report.plot_curves(
        [e for e in entries if family(e.task) == "synthetic"], workdir,
        dict(adding=1 / 6, copy=10 * math.log(8) / (c.lengths.copy + 20)),
        os.path.join(doc_dir, "paper", "curves_synthetic.png"))
    mnist_figure = paper_report.plot_curves(
        [e for e in entries if family(e.task) == "mnist"], workdir, {},
        os.path.join(doc_dir, "paper", "curves_mnist.png"))
    text = render(c, entries, workdir, measured, figure, mnist_figure)
    text += newton_section(c, entries, workdir, os.path.join(doc_dir, "paper", "newton.png"))
    os.makedirs(doc_dir, exist_ok=True)
    with open(c.report, "w") as f:
        f.write(text)
    print(f"report: {c.report}")


def render(c: ml_collections.ConfigDict, entries: list[paper_report.Entry], workdir: str,
           measured: dict[str, Any], figure: str | None, mnist_figure: str | None) -> str:
    """The markdown of docs/results_paper.md."""
    rel = os.path.relpath
    doc_dir = os.path.dirname(c.report) or "."
    loads = [x for p in measured["points"].values() for x in p.get("load_average", [])]
    # A load above the core count means other work shared the cores while timing.
    busy = bool(loads) and max(loads) > (measured.get("cpus") or 1) + 0.5
    load_text = (f" Step times were measured with `{measured.get('command')}` "
                 f"({measured.get('timing_steps')} steps per point after 2 compiling ones, "
                 f"median) on {measured.get('cpus')} CPU cores"
                 f"{' shared with other work' if busy else ', otherwise idle'}: 1-minute "
                 f"load average {min(loads):g} to {max(loads):g} around the measurements"
                 f"{', so on an idle machine expect less' if busy else ''}. MNIST rows are timed "
                 "on procedural 28x28 digits of the same shape." if loads else "")
    lines = [
        "# Bai et al. 2018, Table 2: ours beside the paper's", "",
        "Generated by `python -m experiments.sweep --config=configs/sweeps/paper.py "
        "--workdir=DIR` (the adding and copy rows; `:mnist` the MNIST rows on a GPU/TPU; "
        "`:estimate` times every row's training step and rewrites this page; `--report_only` "
        "rewrites it from the rows finished so far, training nothing); "
        "the protocol and every difference from the paper's code: "
        f"[paper_protocol.md]({rel('docs/paper_protocol.md', doc_dir)}). "
        "Adding: test MSE (predicting 1 scores 1/6); copy: test cross-entropy per step "
        "(memoryless 10 ln 8 / (T + 20) = 0.0204 at T = 1000); MNIST: test accuracy %. "
        "Paper columns are Table 2 of arXiv:1803.01271.", "",
        "**Stop rule (every model alike).** "
        f"Adding: {_rule(c, 'synthetic', 1 / 6)}. "
        f"Copy: {_rule(c, 'synthetic', 10 * math.log(8) / (c.lengths.copy + 20))}. "
        f"MNIST: {_rule(c, 'mnist')}. The budget is the paper's (epochs x batches per epoch of "
        "its code) and the most a run may take; `steps run` says where and why each stopped.", "",
        "**Wall time** is the run's own training seconds (compile and evaluations included); "
        "for a row not yet run, the estimate is the full budget at the measured step time plus "
        "its evaluations (an upper bound: the stop rule may end it sooner)." + load_text, "",
        paper_report.table(entries, workdir, measured.get("points", {})), "",
    ]
    lines += _cost_lines(entries, workdir, measured)
    if figure:
        lines += [f"![eval loss vs step]({rel(figure, doc_dir)})", ""]
    if mnist_figure:
        lines += [f"![eval accuracy vs step]({rel(mnist_figure, doc_dir)})", ""]
    if not figure:
        lines += ["Learning curves (eval metric vs step, log scale, like the paper's Figures "
                  "2-3) appear here once a point has evaluated.", ""]
    return "\n".join(lines)


def newton_section(c: ml_collections.ConfigDict, entries: list[paper_report.Entry], workdir: str,
                   figure: str) -> str:
    """The Newton solves of the trained recurrent points; "" where there are none.

    Read from their cached newton.json in the workdir, as a table, sentences and a figure.
    """
    from cnn_rnn.diagnostics.newton_points import cached_row
    from cnn_rnn.diagnostics.report import newton_lines, plot_newton

    rows = []
    for e in entries:
        row = cached_row(os.path.join(workdir, e.point))
        if row:
            rows.append({"newton": row, "T": sequence_length(c, e.task)})
    if not plot_newton(rows, figure):
        return ""
    caption = "Newton iterations against the Lyapunov exponent, trained points"
    link = os.path.relpath(figure, os.path.dirname(c.report) or ".")
    return "\n".join(["", *newton_lines(rows, f"![{caption}]({link})\n",
                                         "## Newton solvers on the trained networks")])


def _rule(c: ml_collections.ConfigDict, fam: str, baseline: float | None = None) -> str:
    from cnn_rnn.training.stopping import StopRule

    return StopRule(**c.stop[fam].to_dict()).describe(baseline)


def _cost_lines(entries: list[paper_report.Entry], workdir: str,
                measured: dict[str, Any]) -> list[str]:
    """The summed cost of the measured rows not yet run, per family (median and fastest step)."""
    lines = []
    for fam, where in (("synthetic", "in the CPU sweep (one point after another)"),
                       ("mnist", "on this CPU, so over the hour a CPU run may take: these rows "
                                 "are for a GPU/TPU (`:mnist`)")):
        todo = [e for e in entries if family(e.task) == fam and e.point in measured["points"]
                and paper_report.read_summary(os.path.join(workdir, e.point)) is None]
        if not todo:
            continue
        timed = [measured["points"][e.point] for e in todo]
        hours = [sum(paper_report.estimate_seconds(e, t.get(key, t["seconds_per_step"]))
                     for e, t in zip(todo, timed, strict=True)) / paper_report.HOUR
                 for key in ("seconds_per_step", "min")]
        names = ", ".join(f"{e.task} {e.model}" for e in todo)
        lines += [f"- Not yet run, measured ({names}): at most {hours[0]:.0f} h at the median "
                  f"step time, {hours[1]:.0f} h at each row's fastest timed step, {where}."]
    return [*lines, ""] if lines else []
