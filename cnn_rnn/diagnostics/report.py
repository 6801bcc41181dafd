"""The ablation report: report.md and analysis.json in the sweep's workdir.

report.md holds tables, figures and sentences written from the measured numbers; analysis.json
the same numbers, machine-readable.

Nothing here asserts a result in advance: each sentence is assembled from `ablation.analyse`, so
a run where, say, the LSTM fails earlier than the tanh-RNN says exactly that.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_rnn.diagnostics import figures
from cnn_rnn.diagnostics.ablation import DEFAULT_BEAT_RATIO, SUMMARY_LAYER, analyse
from cnn_rnn.diagnostics.figures import arch_order, label
from cnn_rnn.diagnostics.profiles import DEFAULT_THRESHOLD
from cnn_rnn.training.stopping import StopRule

REPORT_FILE = "report.md"
ANALYSIS_FILE = "analysis.json"
GATED = ("lstm", "gru")
SAME_RATE = 1.1  # decay rates within 10% of each other read as "about as fast"


def fmt(value: Any, digits: int = 3) -> str:
    """Format a number for a table: `digits` significant digits; "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": a diverged run, shown as such
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """Return a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |"
              for row in body]
    return "\n".join(lines)


def decay_text(by_arch: Mapping[str, Mapping[str, float | None]],
               lengths: Mapping[str, Sequence[int]],
               tested: Mapping[str, Sequence[int]]) -> list[str]:
    """Sentences ranking the architectures by the measured decay rate, one paragraph per task.

    `lengths`: the lengths each task's means are over (`ablation.common_lengths`); `tested`: all
    lengths tested, so a run in progress says which ones the means leave out.
    """
    out = []
    for task, rates in sorted(by_arch.items()):
        known = sorted(((r, a) for a, r in rates.items() if r is not None))
        if not known:
            continue
        parts = ", ".join(f"{label(a)} {r:+.3g}" for r, a in known)
        over = f"mean over T ∈ {{{', '.join(map(str, lengths[task]))}}}"
        if list(lengths[task]) != list(tested[task]):
            over += ", the lengths every architecture has reached so far"
        text = (f"**{task}** ({over}): "
                f"log10 ‖∂L/∂h_t‖ changes per step back by {parts} decades. "
                f"Fastest decay: {label(known[0][1])}; slowest: {label(known[-1][1])}.")
        tenfold = [f"{label(a)} every {-1 / r:.3g} steps" for r, a in known if r < 0]
        if tenfold:
            text += " The gradient shrinks tenfold: " + "; ".join(tenfold) + "."
        gated = [a for a in GATED if rates.get(a) is not None]
        if rates.get("rnn") is not None and gated:
            mean_gated = sum(rates[a] for a in gated) / len(gated)
            if mean_gated < 0 and rates["rnn"] < 0:
                ratio = rates["rnn"] / mean_gated
                how = (f"{max(ratio, 1 / ratio):.3g}x {'faster' if ratio > 1 else 'slower'} "
                       "per step than" if max(ratio, 1 / ratio) >= SAME_RATE
                       else "about as fast per step as")  # not "1x slower"
                text += (f" The tanh-RNN's gradient decays {how} the gated cells' "
                         f"({' and '.join(map(label, gated))}: {mean_gated:+.3g}).")
        out.append(text)
    return out


def failure_text(failure: Mapping[str, Mapping[str, int | None]],
                 metric: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences giving, per task and architecture, the first length not beating the baseline.

    `metric`: the metric_vs_length entries, for the lengths each architecture was tested at
    (in a partial run one may have reached fewer than another).
    """
    out = []
    for task, archs in sorted(failure.items()):
        shortest = min(e["T"] for e in metric if e["task"] == task)
        parts = []
        for arch in arch_order(list(archs)):
            t = archs[arch]
            if t is None:
                longest = max(e["T"] for e in metric if e["task"] == task and e["arch"] == arch)
                parts.append(f"{label(arch)} beats it at every tested length (up to "
                             f"T={longest})")
            elif t == shortest:
                parts.append(f"{label(arch)} does not beat it even at the shortest T={t}")
            else:
                parts.append(f"{label(arch)} stops beating it at T={t}")
        out.append(f"**{task}**: " + "; ".join(parts) + ".")
    return out


def clipping_text(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences comparing each exploding-prone run with and without clipping."""
    out = []
    pairs: dict[tuple, dict[bool, Mapping[str, Any]]] = {}
    for e in entries:
        pairs.setdefault((e["task"], e["arch"], e["T"], e["seed"]), {})[bool(e["clip"])] = e
    for (task, arch, length, seed), pair in sorted(pairs.items()):
        if len(pair) != 2:
            continue
        off, on = pair[False], pair[True]

        def describe(e: Mapping[str, Any]) -> str:
            bad = e["nonfinite_windows"]
            return (f"max finite gradient norm {fmt(e['max_grad_norm'])}"
                    + (f" ({bad} logged windows with a non-finite norm)" if bad else "")
                    + f", {e['skipped']} skipped non-finite steps, final eval loss "
                    f"{fmt(e['final_eval_loss'])}")

        verdict = []
        a, b = off["final_eval_loss"], on["final_eval_loss"]
        change = f"({fmt(a)} → {fmt(b)}; baseline {fmt(on['baseline'])})"
        if math.isfinite(a) and math.isfinite(b):
            verdict.append(f"clipping {'lowered' if b < a else 'did not lower'} the final eval "
                           f"loss {change}")
        elif math.isfinite(b):
            verdict.append(f"clipping kept the final eval loss finite {change}")
        elif math.isfinite(a):
            verdict.append(f"only the clipped run ended with a non-finite eval loss {change}")
        else:
            verdict.append(f"neither run ended with a finite eval loss {change}")
        if off["skipped"] != on["skipped"]:
            verdict.append(f"skipped steps {off['skipped']} → {on['skipped']}")
        lr = f", learning rate {fmt(on['lr'])}" if on.get("lr") is not None else ""
        out.append(f"**{label(arch)}, {task} T={length}{lr}, seed {seed}**: without clipping "
                   f"{describe(off)}; with clipping {describe(on)}. So "
                   + ", ".join(verdict) + ".")
    return out


def _lengths(entries: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, set[int]] = {}
    for e in entries:
        out.setdefault(e["task"], set()).add(e["T"])
    return {k: sorted(v) for k, v in out.items()}


def write_report(rows: Sequence[Mapping[str, Any]], workdir: str, *,
                 settings: Mapping[str, Any] | None = None,
                 command: str = "python -m experiments.ablate",
                 threshold: float = DEFAULT_THRESHOLD,
                 beat_ratio: float = DEFAULT_BEAT_RATIO,
                 total_points: int | None = None) -> dict[str, str]:
    """Write the figures, analysis.json and report.md into `workdir`; return their paths.

    Args:
      rows: run_sweep rows with the ProbeHook's fields.
      workdir: the sweep's folder (figures go to `<workdir>/figures/`).
      settings: the sweep config (as a dict) to record in the report.
      command: the command that ran the ablation, named at the top of the report.
      threshold: relative level of "steps in the past".
      beat_ratio: a run beats the baseline when its eval loss < beat_ratio x baseline.
      total_points: the sweep's number of points when `rows` holds only those finished so far
        (the report then says it is partial); None when every point is done.

    """
    result = analyse(rows, threshold, beat_ratio)
    fig_dir = os.path.join(workdir, "figures")
    tasks = sorted({r["task"] for r in rows if r.get("group") == "main"})
    paths: dict[str, str] = {}
    for task in tasks:
        for kind, fn in (("gradients", figures.plot_gradient_profiles),
                         ("loss_vs_length", figures.plot_metric_vs_length)):
            p = fn(rows, task, os.path.join(fig_dir, f"{kind}_{task}.png"))
            if p:
                paths[f"{kind}_{task}"] = p
    p = figures.plot_clipping(rows, os.path.join(fig_dir, "clipping.png"))
    if p:
        paths["clipping"] = p
    p = plot_newton(rows, os.path.join(fig_dir, "newton.png"))
    if p:
        paths["newton"] = p
    result["figures"] = {k: os.path.relpath(v, workdir) for k, v in paths.items()}
    result["settings"] = dict(settings or {})
    with open(os.path.join(workdir, ANALYSIS_FILE), "w") as f:
        json.dump(jsonable(result), f, indent=1, sort_keys=True, default=str)
    md = render(result, rows, command, total_points)
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        f.write(md)
    paths["report"] = os.path.join(workdir, REPORT_FILE)
    paths["analysis"] = os.path.join(workdir, ANALYSIS_FILE)
    return paths


def write_ablation_report(rows: Sequence[Mapping[str, Any]], workdir: str, config: Any, *,
                          command: str, total_points: int | None = None) -> dict[str, str]:
    """`write_report` with an ablation config's settings (its probe threshold and beat ratio)."""
    return write_report(rows, workdir, settings=config.to_dict(), command=command,
                        threshold=config.probe.threshold,
                        beat_ratio=config.get("beat_ratio", DEFAULT_BEAT_RATIO),
                        total_points=total_points)


def newton_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The NewtonHook rows of the trained long points (empty without that hook)."""
    return [dict(r["newton"], T=r["T"]) for r in rows if r.get("newton")]


def plot_newton(rows: Sequence[Mapping[str, Any]], path: str) -> str | None:
    """Plot the Newton rows' iterations against their Lyapunov exponent; None without rows."""
    solved = newton_rows(rows)
    if not solved:
        return None
    from cnn_rnn.diagnostics import newton_report  # it imports this module's helpers

    return newton_report.plot(solved, newton_methods(solved), path)


def newton_methods(solved: Sequence[Mapping[str, Any]]) -> list[str]:
    """The solver names measured in the Newton rows ("deer", "quasi_deer")."""
    return sorted({k.removeprefix("iterations_") for r in solved for k in r
                   if k.startswith("iterations_")})


def budget_lines(rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any],
                 lengths: Mapping[str, Sequence[int]]) -> list[str]:
    """The budget rule of a variant that has one, and the steps each point ran and why."""
    stop = settings.get("stop")
    if not stop:
        return []
    rule = StopRule(**stop)
    lines = [f"Budget per point: at most {settings.get('steps', 0):,} steps; {rule.describe()} "
             f"(`stop`, the same for every architecture). A point that fails here failed "
             "under that rule: its loss stopped improving for that long, it diverged, or it used "
             "the whole budget; a model that would start learning later still reads as "
             "failing. Steps run (reason: solved, plateau, diverged, or the whole budget):", ""]
    main = [r for r in rows if r.get("group") == "main"]
    for task in sorted(lengths):
        cells = {(r["arch"], r["T"]): r for r in main if r["task"] == task and r["seed"] == 0}
        archs = arch_order(list(dict.fromkeys(a for a, _ in cells)))
        body = [[label(a), *[_steps_cell(cells.get((a, t)), rule.describe())
                             for t in lengths[task]]] for a in archs]
        lines += [f"**{task}**", "", table(["architecture", *[f"T={t}" for t in lengths[task]]],
                                           body), ""]
    earlier = sorted({r["stopped"]["rule"] for r in main if _earlier_plateau(r, rule.describe())})
    if earlier:
        lines += ["\\* stopped on a plateau under an earlier rule (" + "; or ".join(earlier)
                  + "); the training command continues such a point under the rule above.", ""]
    return lines


def _earlier_plateau(row: Mapping[str, Any], rule: str) -> bool:
    """Whether the point stopped on a plateau under another rule than `rule` (it may go on)."""
    stopped = row.get("stopped") or {}
    return stopped.get("reason") == "plateau" and stopped.get("rule", rule) != rule


def _steps_cell(row: Mapping[str, Any] | None, rule: str) -> str:
    """A point's steps and why it stopped, * if on a plateau under another rule than `rule`."""
    if row is None:
        return "n/a"
    reason = (row.get("stopped") or {}).get("reason", "budget")
    return f"{row['step']:,} ({reason}{'*' * _earlier_plateau(row, rule)})"


def _linear_solve_words(rows: Sequence[Mapping[str, Any]]) -> str:
    """How the rows' Newton iterations solved their linear recurrences, in words."""
    words = {"sequential": "by `lax.scan`, the same iterates as the parallel associative scan up "
                           "to rounding for O(T H^2) work per DEER iteration instead of O(T H^3)",
             "auto": "by the parallel associative scan"}
    solves = sorted({r.get("linear_solve", "auto") for r in rows})
    return "; ".join(words[s] + (f" (linear_solve={s})" if len(solves) > 1 else "")
                     for s in solves)


def newton_lines(rows: Sequence[Mapping[str, Any]], figure: str,
                 heading: str = "## 4. Newton solvers on the trained points at the papers' "
                 "lengths") -> list[str]:
    """The Newton solvers on the trained long points, from the NewtonHook rows.

    `figure`: the markdown of the iterations-vs-Lyapunov figure ("" for none). Used by the
    ablation's report (its section 4) and by the Bai et al. sweep's page.
    """
    solved = newton_rows(rows)
    skipped = [f"{label(r['arch'])} on {r['task']} at "
               f"T={r['T']} ({r['newton_skipped']})" for r in rows if r.get("newton_skipped")]
    if not solved:
        return [heading, "", "No point solved: " + "; ".join(skipped) + "."] if skipped else []
    from cnn_rnn.diagnostics import newton_report  # it imports this module's helpers

    methods = newton_methods(solved)
    lines = [heading, "",
             f"The trained recurrent points at T >= {min(r['T'] for r in solved)}, each solved "
             "for all steps at once by Newton's method on its bottom layer (a probe batch; "
             "max_iters 2T + 1, else the sequential scan takes over; each iteration's linear "
             f"recurrence solved {_linear_solve_words(solved)}), against the largest "
             "Lyapunov exponent measured along the same trajectory (cnn_rnn/diagnostics/"
             "newton.py).", "", newton_report.solver_table(solved, methods), ""]
    for m in methods:
        lines += newton_report.method_sentences(solved, m)
    lines += solve_time_lines(solved, methods)
    if skipped:
        lines += ["", "Not solved: " + "; ".join(skipped) + "."]
    return [*lines, "", figure]


def solve_time_lines(solved: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> list[str]:
    """The wall time of each point's solves, where its rows have them (`NewtonHook` rows do)."""
    timed = [r for r in solved if any(f"seconds_{m}" in r for m in methods)]
    if not timed:
        return []
    parts = [f"{label(r['arch'])} on {r['task']} at T={r['T']}: " + ", ".join(
        f"{m} {r[f'seconds_{m}']:.0f} s" for m in methods if f"seconds_{m}" in r) for r in timed]
    return ["", "Wall time of each solve (one process on one CPU core, compilation and the "
                "gradient check included): " + "; ".join(parts) + "."]


def jsonable(value: Any) -> Any:
    """Return value with non-finite floats replaced by "nan"/"inf"/"-inf" (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _figure(result: Mapping[str, Any], key: str, caption: str) -> str:
    rel = result["figures"].get(key)
    return f"![{caption}]({rel})\n" if rel else ""


def _training_command(command: str) -> str:
    """`command` without the flag that made it only report (`--report_only[=...]`)."""
    return " ".join(w for w in command.split() if w.split("=")[0] != "--report_only")


def render(result: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
           command: str = "python -m experiments.ablate", total_points: int | None = None) -> str:
    """Return the markdown of the report from `analyse`'s result (plus figure paths).

    `total_points` (see `write_report`) marks a report of a run still in progress.
    """
    decay, metric = result["decay"], result["metric_vs_length"]
    lengths = _lengths(metric)
    decay_lengths = result["decay_lengths"]
    s = result.get("settings", {})
    n_main = sum(r.get("group") == "main" for r in rows)
    lines = [
        "# Vanishing and exploding gradients versus sequence length", "",
        f"Generated by `{command}`.", "",
        f"{len(rows)} runs ({n_main} in the architecture x length grid, "
        f"{len(rows) - n_main} in the clipping comparison); variant `{s.get('variant', '?')}`. "
        "All numbers below are computed from this run's results (results.json, analysis.json).",
        *(["", f"**Partial: {len(rows)} of {total_points} points finished so far.** Every "
               "statement below is about those points only; the training command "
               f"(`{_training_command(command)}`) continues the run where it stopped."]
          if total_points and total_points > len(rows) else []),
        "", "## Definitions", "",
        "- **Gradient profile** ‖∂L/∂h_t‖: L2 norm over the hidden units of the gradient of each "
        "example's loss with respect to the state h_t, averaged over a fixed probe batch of "
        "evaluation examples; for copy the loss counts only the 10 recalled symbols. Measured "
        f"on layer {SUMMARY_LAYER + 1} (the bottom layer, where the input at step t enters; "
        "TCN: the first residual block's output), at initialisation and at every saved checkpoint.",
        "- **Decay rate**: slope of a least-squares line through log10 ‖∂L/∂h_t‖ against the "
        "distance T-1-t from the last step (decades per step; negative = vanishing); exact zeros "
        "and underflow below 1e-30 of the last step's norm are left out.",
        f"- **Steps in the past**: the farthest distance back whose gradient is still at least "
        f"{result['threshold']:g} x the gradient at the last step.",
        f"- **Beats the baseline**: mean final eval loss over seeds < {result['beat_ratio']:g} x "
        "the task's trivial baseline (adding: MSE 1/6 of always predicting 1; copy: "
        "10 ln 8/(T+20), a memoryless guess).",
        "- **Spectral radius ρ**: max |eigenvalue| of the candidate block of W_h (tanh-RNN/IRNN: "
        "W_h; LSTM: g; GRU: n) or max |λ| of the LRU.",
        "", "## 1. How fast the gradient vanishes", "",
        "At initialisation:", "",
        *[f"- {t}" for t in decay_text(result["decay_by_arch"], decay_lengths, lengths)], "",
        "After training (last checkpoint):", "",
        *[f"- {t}" for t in decay_text(result["decay_by_arch_final"], decay_lengths,
                                             lengths)], "",
        "Decay rates in decades per step (‖∂L/∂h_t‖; J: the Jacobian norm ‖∂h_T/∂h_t‖_F); "
        "steps in the past at the threshold above; ρ: spectral radius.", "",
        table(["task", "architecture", "T", "decay init", "decay trained", "J decay init",
               "J decay trained", "steps in past init", "steps in past trained", "ρ init",
               "ρ trained"],
              [[e["task"], label(e["arch"]), e["T"], e["decay_init"], e["decay_final"],
                e["jacobian_decay_init"], e["jacobian_decay_final"], e["steps_init"],
                e["steps_final"], e["radius_init"], e["radius_final"]]
               for e in decay]), "",
    ]
    for task in sorted(lengths):
        lines.append(_figure(result, f"gradients_{task}",
                             f"log10 gradient norm against distance, {task}"))
    lines += ["## 2. Final loss against length", "",
              *[f"- {t}" for t in failure_text(result["failure_length"], metric)], "",
              *budget_lines(rows, s, lengths)]
    for task in sorted(lengths):
        archs = arch_order([e["arch"] for e in metric if e["task"] == task])
        cells = {(e["arch"], e["T"]): e for e in metric if e["task"] == task}
        body = [[label(a), *[_loss_cell(cells.get((a, t))) for t in lengths[task]]]
                for a in archs]
        base = [fmt(cells[next(k for k in cells if k[1] == t)]["baseline"])
                for t in lengths[task]]
        lines += [f"**{task}**: final eval loss (ratio to baseline; ✓ = beats it)", "",
                  table(["architecture", *[f"T={t}" for t in lengths[task]]],
                        [*body, ["baseline", *base]]), "",
                  _figure(result, f"loss_vs_length_{task}", f"final loss against length, "
                          f"{task}")]
    clip = result["clipping"]
    lines += ["## 3. Gradient clipping on exploding runs", ""]
    if clip:
        lines += [*[f"- {t}" for t in clipping_text(clip)], "",
                  "The gradient norm is the global norm before clipping (what the optimizer "
                  "would have applied without it). Skipped steps had a non-finite loss or "
                  "update and were not applied (on_nonfinite=skip).", "",
                  table(["task", "architecture", "T", "seed", "lr", "clipping", "max ‖g‖",
                         "non-finite windows", "skipped steps", "final train loss",
                         "final eval loss", "baseline", "ρ trained"],
                        [[e["task"], label(e["arch"]), e["T"], e["seed"], e.get("lr"),
                          "on" if e["clip"] else "off", e["max_grad_norm"],
                          e["nonfinite_windows"], e["skipped"], e["final_train_loss"],
                          e["final_eval_loss"], e["baseline"], e["radius_final"]]
                         for e in clip]), "",
                  _figure(result, "clipping", "gradient norm during training with and "
                          "without clipping")]
    else:
        lines.append("(no clipping runs in this variant)")
    lines += ["", *newton_lines(rows, _figure(result, "newton", "Newton iterations against "
                                              "the Lyapunov exponent, trained points"))]
    return "\n".join(lines) + "\n"


def _loss_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "n/a"
    return f"{fmt(entry['loss'])} ({fmt(entry['ratio'], 2)}){' ✓' if entry['beats'] else ''}"
