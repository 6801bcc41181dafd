"""The vanishing-gradient ablation: its config grid, its summaries and report, and the smoke run."""

import json
import logging
import os
import re

import numpy as np
import pytest

from cnn_rnn.diagnostics.ablation import (
    ProbeHook,
    analyse,
    clipping_table,
    failure_lengths,
    metric_vs_length,
)
from cnn_rnn.diagnostics.report import write_report
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.tcn import receptive_field
from cnn_rnn.sweep import run_sweep, validate_points
from configs.ablations import vanishing_gradients as vg

CONFIG = "configs/ablations/vanishing_gradients.py"


# --- the grid --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["smoke", "default", "full"])
def test_every_variant_builds_valid_points(variant):
    c = vg.get_config(variant)
    points = vg.get_points(c)
    validate_points(points)
    assert all(p.config.on_nonfinite == "skip" for p in points)
    clip = [p for p in points if p.tags["group"] == "clip"]
    assert {p.tags["clip"] for p in clip} == {True, False}
    assert {p.config.optimizer.grad_clip_norm > 0 for p in clip} == {True, False}
    for task in c.tasks:
        tcn = vg.tcn_settings(c, task)
        assert receptive_field(tcn["kernel_size"], tcn["levels"]) >= max(c.lengths[task])


def test_the_default_grid_covers_the_brief():
    c = vg.get_config(None)
    main = [p.tags for p in vg.get_points(c) if p.tags["group"] == "main"]
    assert {t["task"] for t in main} == {"adding", "copy"}
    archs = {t["arch"] for t in main}
    assert {"rnn", "irnn", "lstm", "gru", "tcn"} <= archs and archs & {"lru", "mingru"}
    assert all(len({t["T"] for t in main if t["task"] == task}) >= 3 for task in c.tasks)
    with pytest.raises(ValueError, match="accepted"):
        vg.get_config("huge")


# --- summaries and report from synthetic rows ------------------------------------------------

def _row(arch, length, loss, rate, group="main", clip=True, history=None, seed=0):
    g = 0.5 * 10.0 ** (rate * np.arange(length))[::-1]  # g_t, decaying by `rate` per step back
    probe = {"grad_norm": [g.tolist()], "jacobian_norm": [(2 * g).tolist()],
             "spectral_radius": {"rnn/layer0_fwd/h": 0.9}}
    return {"name": f"{arch}_{length}_{group}_{clip}", "group": group, "task": "adding",
            "T": length, "arch": arch, "seed": seed, "clip": clip,
            "eval": {"loss": loss}, "baseline": {"metric": "loss", "value": 1 / 6},
            "probes": [{"step": 0, **probe}, {"step": 10, **probe}],
            "history": history or [{"step": 10, "loss": loss, "grad_norm": 1.0,
                                    "grad_norm_max": 1.0, "skipped": 0.0}]}


def test_summaries_follow_the_numbers_not_a_script(tmp_path):
    rows = [_row("rnn", 10, 0.01, -0.3), _row("rnn", 50, 0.16, -0.3),
            _row("lstm", 10, 0.02, -0.05), _row("lstm", 50, 0.03, -0.05),
            _row("gru", 10, 0.5, -0.02), _row("gru", 50, 0.5, -0.02)]
    result = analyse(rows, threshold=1e-3, beat_ratio=0.9)
    rates = result["decay_by_arch"]["adding"]
    assert rates["rnn"] == pytest.approx(-0.3) and rates["lstm"] == pytest.approx(-0.05)
    assert result["failure_length"]["adding"] == {"rnn": 50, "lstm": None, "gru": 10}
    assert {e["arch"]: e["jacobian_decay_final"] for e in result["decay"]} == pytest.approx(
        {"rnn": -0.3, "lstm": -0.05, "gru": -0.02})
    steps = {(e["arch"], e["T"]): e["steps_init"] for e in result["decay"]}
    assert steps[("rnn", 50)] == 10 and steps[("lstm", 50)] == 49

    paths = write_report(rows, str(tmp_path), settings={"variant": "test"})
    md = (tmp_path / "report.md").read_text()
    assert "tanh-RNN -0.3" in md and "Fastest decay: tanh-RNN; slowest: GRU" in md
    assert re.search(r"tanh-RNN's gradient decays 8\.57x faster", md)  # 0.3 / mean(0.05, 0.02)
    assert "tanh-RNN stops beating it at T=50" in md
    assert "LSTM beats it at every tested length (up to T=50)" in md
    assert "GRU does not beat it even at the shortest T=10" in md
    for key in ("gradients_adding", "loss_vs_length_adding"):
        assert os.path.getsize(paths[key]) > 0 and f"figures/{key}.png" in md
    assert json.loads((tmp_path / "analysis.json").read_text())["failure_length"]

    # Swap the measured rates: the sentences swap with them.
    flipped = [dict(r, probes=_row(r["arch"], r["T"], 0.0, -0.01 if r["arch"] == "rnn" else -0.2)
                    ["probes"]) for r in rows]
    write_report(flipped, str(tmp_path))
    assert "tanh-RNN's gradient decays 20x slower" in (tmp_path / "report.md").read_text()
    # Rates within 10% of each other: no "1x slower".
    alike = [dict(r, probes=_row(r["arch"], r["T"], 0.0, -0.105 if r["arch"] == "rnn" else -0.1)
                  ["probes"]) for r in rows]
    write_report(alike, str(tmp_path))
    assert "tanh-RNN's gradient decays about as fast per step as the gated cells'" in \
        (tmp_path / "report.md").read_text()


def test_clipping_summary_counts_skips_and_ignores_non_finite_norms(tmp_path):
    nan, inf = float("nan"), float("inf")
    off = [{"step": 5, "loss": 3.0, "grad_norm": 50.0, "grad_norm_max": 80.0, "skipped": 0.0},
           {"step": 10, "loss": nan, "grad_norm": nan, "grad_norm_max": inf, "skipped": 4.0}]
    on = [{"step": 5, "loss": 0.3, "grad_norm": 9.0, "grad_norm_max": 12.0, "skipped": 0.0},
          {"step": 10, "loss": 0.1, "grad_norm": 2.0, "grad_norm_max": 3.0, "skipped": 0.0}]
    rows = [_row("irnn", 20, 1e30, 0.0, "clip", False, off),
            _row("irnn", 20, 0.1, 0.0, "clip", True, on)]
    table = {e["clip"]: e for e in clipping_table(rows)}
    assert table[False]["max_grad_norm"] == 80.0 and table[False]["skipped"] == 4
    assert table[False]["nonfinite_windows"] == 1 and table[True]["skipped"] == 0
    assert metric_vs_length(rows) == [] and failure_lengths([]) == {}
    paths = write_report(rows, str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "clipping lowered the final eval loss (1e+30 → 0.1" in md
    assert "skipped steps 4 → 0" in md and os.path.exists(paths["clipping"])


# --- end to end ------------------------------------------------------------------------------

def _mtimes(workdir, name):
    return {d: os.stat(os.path.join(workdir, d, name)).st_mtime_ns for d in os.listdir(workdir)
            if os.path.exists(os.path.join(workdir, d, name))}


@pytest.mark.slow  # long: in the slow suite, which CI runs after the fast one
def test_smoke_ablation_end_to_end_and_a_rerun_redoes_nothing(tmp_path, cli, caplog):
    workdir = str(tmp_path / "abl")
    first = cli("experiments.ablate", f"--config={CONFIG}:smoke", f"--workdir={workdir}",
                devices=1, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    c = vg.get_config("smoke")
    points = vg.get_points(c)
    n = len(points)
    assert f"point {n}/{n}" in first.stderr and "ETA" in first.stderr
    for name in ("report.md", "results.json", "analysis.json", "figures/clipping.png",
                 "figures/gradients_adding.png", "figures/loss_vs_length_adding.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    rows = json.load(open(os.path.join(workdir, "results.json")))
    assert len(rows) == n
    assert all([p["step"] for p in r["probes"]] == [0, c.steps] for r in rows)
    assert all(len(r["probes"][0]["grad_norm"][0]) == r["T"] for r in rows)
    md = open(os.path.join(workdir, "report.md")).read()
    assert "## 1. How fast the gradient vanishes" in md and "decades" in md
    assert f"Generated by `python -m experiments.ablate --config={CONFIG}:smoke" in md
    assert "## 3. Gradient clipping" in md and "without clipping" in md

    # The rerun, in process (what experiments.ablate.main does): nothing trains or probes again.
    probes, metrics = _mtimes(workdir, "probe.json"), _mtimes(workdir, "metrics.jsonl")
    assert len(probes) == n
    hook = ProbeHook(c.probe.batch_size, c.probe.num_probes, c.probe.threshold)
    with caplog.at_level(logging.INFO, logger="cnn_rnn"):
        again = run_sweep(points, workdir, after_point=hook)
    write_report(again, workdir)
    assert caplog.text.count("finished earlier, skipped") == n
    assert caplog.text.count("probes cached") == n and "probed steps" not in caplog.text
    assert _mtimes(workdir, "probe.json") == probes
    assert _mtimes(workdir, "metrics.jsonl") == metrics
    assert [r["probes"] for r in again] == [r["probes"] for r in rows]

    # A report of the points finished so far (a long run paused): it says so, trains nothing.
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(rows[:2], f)
    partial = cli("experiments.ablate", f"--config={CONFIG}:smoke", f"--workdir={workdir}",
                  "--report_only", devices=1, timeout=400)
    assert partial.returncode == 0, partial.stderr[-3000:]
    md = open(os.path.join(workdir, "report.md")).read()
    assert f"Partial: 2 of {n} points finished so far" in md
    # ... and names the command that continues the run, not the one that only reports.
    assert f"(`python -m experiments.ablate --config={CONFIG}:smoke --workdir={workdir}`)" in md
    assert _mtimes(workdir, "metrics.jsonl") == metrics and "point 1/" not in partial.stderr


def test_the_paper_variant_reaches_t1000_under_one_budget_rule():
    c = vg.get_config("paper")
    points = vg.get_points(c)
    validate_points(points)
    assert max(c.lengths.adding) == max(c.lengths.copy) == 1000
    assert {p.tags["arch"] for p in points} == {"rnn", "irnn", "lstm", "gru", "tcn", "lru"}
    assert all(p.config.stop.to_dict() == c.stop.to_dict() for p in points)
    assert {(p.config.steps, p.config.eval_every) for p in points} == {(10_000, 250)}
    assert c.stop.solved_fraction == 0.01 and c.stop.plateau_steps == 5000


def test_the_newton_section_of_a_sweep_config_is_checked_before_any_work():
    from cnn_rnn.diagnostics.newton_points import NewtonHook

    newton = vg.get_config("paper").newton.to_dict()
    assert NewtonHook.from_config(newton).linear_solve == "sequential"
    with pytest.raises(ConfigError, match="newton.linear_solve: must be one of auto, sequential"):
        NewtonHook.from_config({**newton, "linear_solve": "fast"})
    with pytest.raises(ConfigError, match="newton.tolerance: unknown field; accepted: min_length"):
        NewtonHook.from_config({**newton, "tolerance": 1e-3})


def test_diverged_points_sit_on_a_marked_line_instead_of_stretching_the_loss_axis(
        tmp_path, monkeypatch):
    from cnn_rnn.diagnostics import figures

    cases = [("gru", 100, 1e-3), ("gru", 200, 2e-3), ("irnn", 100, 1e-3), ("irnn", 200, 5.7e25),
             ("rnn", 100, "nan"), ("rnn", 200, 0.2)]
    rows = [{"group": "main", "task": "adding", "arch": arch, "T": t,
             "baseline": {"value": 1 / 6}, "eval": {"loss": loss}} for arch, t, loss in cases]
    shown, save = {}, figures._save

    def keep_axes(fig, path):
        shown["ylim"] = fig.axes[0].get_ylim()
        shown["labels"] = fig.axes[0].get_legend_handles_labels()[1]
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep_axes)
    assert figures.plot_metric_vs_length(rows, "adding", str(tmp_path / "f.png"))
    assert shown["ylim"][1] < 10 * figures.DIVERGED_RATIO / 6  # not stretched to 1e25
    assert any(label.startswith("x: diverged") for label in shown["labels"])


def test_a_diverged_long_point_is_named_not_solved(tmp_path):
    from cnn_rnn.diagnostics.newton_points import NewtonHook
    from cnn_rnn.diagnostics.report import newton_lines

    row = {"group": "main", "arch": "irnn", "task": "adding", "T": 600, "step": 2250,
           "eval": {"loss": "nan"}}
    extra = NewtonHook()(None, str(tmp_path), row)  # no point config needed: nothing restored
    assert extra == {"newton_skipped": "its network diverged, eval loss nan"}
    assert not os.listdir(tmp_path)
    lines = newton_lines([{**row, **extra}], "")
    assert ("No point solved: IRNN (ReLU, W=I) on adding at T=600 (its network diverged, eval "
            "loss nan)") in lines[2]
    # Finite but stopped as diverged by the budget rule (a copy IRNN ended at 4.9e32).
    huge = {**row, "eval": {"loss": 4.9e32}, "stopped": {"reason": "diverged"}}
    assert NewtonHook()(None, str(tmp_path), huge) == {
        "newton_skipped": "its network diverged, eval loss 4.9e+32"}
    assert not os.listdir(tmp_path)


@pytest.mark.slow  # a four-point sweep with probes and Newton solves: about 20 s
def test_the_paper_variant_at_tiny_size_stops_reports_and_solves(tmp_path, monkeypatch):
    """Tiny lengths and models: each point stops on its plateau, the report states the rule and
    the steps run, and the longest recurrent points get Newton solves (section 4)."""
    from cnn_rnn.diagnostics.newton_points import NEWTON_FILE, NewtonHook

    c = vg.get_config("paper")
    c.tasks, c.archs = ("adding",), ("rnn", "tcn")
    c.lengths.adding, c.steps, c.eval_every, c.batch_size, c.num_eval = (6, 12), 40, 10, 16, 32
    c.budget.adding, c.tcn_hidden.adding, c.tcn_kernel = 300, 6, 3
    c.stop.plateau_steps, c.stop.min_improvement = 10, 0.99  # a plateau 10 steps after step 10
    c.probe.update(batch_size=8, num_probes=2, checkpoints=1)
    c.newton.min_length = 12
    probe = ProbeHook(c.probe.batch_size, c.probe.num_probes, c.probe.threshold)
    newton = NewtonHook.from_config(c.newton.to_dict())
    workdir = str(tmp_path)
    rows = run_sweep(vg.get_points(c), workdir,
                     after_point=lambda p, d, r: {**probe(p, d, r), **newton(p, d, r)})
    assert [(r["arch"], r["T"], r["step"], r["stopped"]["reason"]) for r in rows] == [
        ("rnn", 6, 20, "plateau"), ("tcn", 6, 20, "plateau"),
        ("rnn", 12, 20, "plateau"), ("tcn", 12, 20, "plateau")]
    solved = [r for r in rows if "newton" in r]
    assert [(r["arch"], r["T"]) for r in solved] == [("rnn", 12)]
    assert solved[0]["newton"]["iterations_deer"] >= 1 and "lyapunov" in solved[0]["newton"]
    assert os.path.exists(os.path.join(workdir, "adding_T12_rnn_s0", NEWTON_FILE))
    write_report(rows, workdir, settings=c.to_dict())
    md = open(os.path.join(workdir, "report.md")).read()
    assert "Budget per point: at most 40 steps" in md and "20 (plateau)" in md
    # Under a looser rule (the command would continue them) the stopped points are marked.
    from cnn_rnn.diagnostics.report import budget_lines

    looser = {**c.to_dict(), "stop": {**c.stop.to_dict(), "plateau_steps": 30}}
    text = "\n".join(budget_lines(rows, looser, {"adding": (6, 12)}))
    assert "20 (plateau*)" in text and "stopped on a plateau under an earlier rule (" in text
    assert "20 (plateau*)" not in "\n".join(budget_lines(rows, c.to_dict(), {"adding": (6, 12)}))
    assert "## 4. Newton solvers" in md and "figures/newton.png" in md
    assert "solved by `lax.scan`, the same iterates" in md  # the config's linear_solve, named
    assert re.search(r"tanh-RNN (stops beating it|does not beat it|beats it)", md)
    assert re.search(r"Wall time of each solve .*: tanh-RNN on adding at T=12: deer \d+ s, "
                     r"quasi_deer \d+ s\.", md)
    assert os.path.getsize(os.path.join(workdir, "figures", "loss_vs_length_adding.png")) > 0
    point = next(p for p in vg.get_points(c) if p.name == "adding_T12_rnn_s0")
    _a_run_stopped_between_newton_methods_resumes_at_the_next(
        newton, point, solved[0], os.path.join(workdir, point.name), monkeypatch)


def _a_run_stopped_between_newton_methods_resumes_at_the_next(hook, point, row, point_dir,
                                                              monkeypatch):
    """With DEER's solve in the partial cache (a run stopped during quasi-DEER's), the hook
    solves only quasi-DEER and writes the whole row."""
    from cnn_rnn.diagnostics import newton_points

    path = os.path.join(point_dir, newton_points.NEWTON_FILE)
    with open(path) as f:
        whole = json.load(f)
    deer = {k: v for k, v in whole["row"].items() if not k.endswith("_quasi_deer")}
    os.remove(path)
    with open(os.path.join(point_dir, newton_points.PARTIAL_FILE), "w") as f:
        json.dump({"settings": whole["settings"], "measured": deer}, f)
    solved_methods = []

    def recording(model, spec, batch, config):
        solved_methods.extend(config.methods)
        return real(model, spec, batch, config)

    real = newton_points.make_measure
    monkeypatch.setattr(newton_points, "make_measure", recording)
    again = hook(point, point_dir, row)["newton"]
    assert solved_methods == ["quasi_deer"]
    assert again["iterations_deer"] == whole["row"]["iterations_deer"]
    assert again["iterations_quasi_deer"] == whole["row"]["iterations_quasi_deer"]
    assert again["seconds_deer"] == whole["row"]["seconds_deer"]  # DEER's was not redone
    assert not os.path.exists(os.path.join(point_dir, newton_points.PARTIAL_FILE))
    with open(path) as f:
        assert json.load(f)["row"]["iterations_quasi_deer"] == again["iterations_quasi_deer"]


# --- the published paper-variant report ------------------------------------------------------

PAPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "docs", "ablation", "paper")


def test_the_published_paper_report_is_the_one_its_committed_record_gives(tmp_path):
    from cnn_rnn.diagnostics.report import write_ablation_report
    from cnn_rnn.sweep import finished_rows

    with open(os.path.join(PAPER, "report.md"), encoding="utf-8") as f:
        published = f.read()
    command = re.search(r"^Generated by `([^`]*)`", published, re.M).group(1)
    assert "--record=docs/ablation/paper/run" in command and "--report_only" in command
    config = vg.get_config("paper")
    points = vg.get_points(config)
    rows = finished_rows(os.path.join(PAPER, "run"), points, "--record")
    write_ablation_report(rows, str(tmp_path), config, command=command,
                          total_points=len(points))
    # Regenerate after a change to the report's code: the command at its top, then copy
    # report.md and figures/ into docs/ablation/paper/ (docs/ablation/paper_variant.md).
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == published


def test_a_partial_runs_sentences_name_each_architectures_own_longest_length():
    from cnn_rnn.diagnostics.report import failure_text

    metric = [dict(task="copy", arch=a, T=t) for a, ts in (("gru", (100, 500)), ("lru", (100,)))
              for t in ts]
    text = failure_text({"copy": {"gru": None, "lru": None}}, metric)[0]
    assert "GRU beats it at every tested length (up to T=500)" in text
    assert "LRU beats it at every tested length (up to T=100)" in text  # not T=500


def test_a_partial_runs_decay_means_are_over_the_lengths_every_architecture_reached(tmp_path):
    # The LSTM has not reached T=50 yet: its rate there would otherwise drop out of its mean only,
    # and the ranking would compare the tanh-RNN's T in {10, 50} with the LSTM's T=10.
    rows = [_row("rnn", 10, 0.01, -0.1), _row("rnn", 50, 0.16, -0.5),
            _row("lstm", 10, 0.02, -0.2)]
    result = analyse(rows, threshold=1e-3, beat_ratio=0.9)
    assert result["decay_lengths"] == {"adding": [10]}
    rates = result["decay_by_arch"]["adding"]
    assert rates["rnn"] == pytest.approx(-0.1) and rates["lstm"] == pytest.approx(-0.2)
    write_report(rows, str(tmp_path), settings={"variant": "test"})
    md = (tmp_path / "report.md").read_text()
    assert ("**adding** (mean over T ∈ {10}, the lengths every architecture has reached so far)"
            in md)
    assert "Fastest decay: LSTM; slowest: tanh-RNN" in md

    write_report(rows + [_row("lstm", 50, 0.03, -0.2)], str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "**adding** (mean over T ∈ {10, 50}): " in md  # finished grid: no qualifier
    assert "Fastest decay: tanh-RNN; slowest: LSTM" in md  # rnn mean -0.3 now
