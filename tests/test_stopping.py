"""The solved / plateau early stop (cnn_rnn/training/stopping.py), in the loop and in sweeps."""

import json

import pytest

from cnn_rnn.errors import ConfigError
from cnn_rnn.sweep import Point, finished_summary, run_sweep
from cnn_rnn.training.loop import train_and_evaluate
from cnn_rnn.training.stopping import StopRule, stop_reason, stop_rule
from configs.common import base_config


def evals(*losses, every=10):
    return [{"step": every * (i + 1), "loss": v} for i, v in enumerate(losses)]


def test_solved_is_below_the_fraction_of_the_baseline():
    rule = StopRule(solved_fraction=0.01)
    assert stop_reason(rule, evals(0.5, 0.2, 0.0019), baseline=0.2) == "solved"
    assert stop_reason(rule, evals(0.5, 0.2, 0.0021), baseline=0.2) is None


def test_plateau_counts_steps_since_the_last_relative_improvement():
    rule = StopRule(plateau_steps=30, min_improvement=0.1)
    # 1.0 -> 0.95 is under 10%: the record stays at step 10 until 0.85 at step 40.
    assert stop_reason(rule, evals(1.0, 0.95, 0.92), None) is None          # 20 steps
    assert stop_reason(rule, evals(1.0, 0.95, 0.92, 0.91), None) == "plateau"  # 30 steps
    assert stop_reason(rule, evals(1.0, 0.95, 0.92, 0.85), None) is None
    assert stop_reason(rule, evals(1.0, float("nan"), float("nan"), float("nan")), None) == \
        "plateau"


def test_a_non_finite_loss_reads_the_same_from_the_metrics_file():
    # metrics.jsonl stores NaN as "nan": a resumed run must decide as the uninterrupted one did.
    rule = StopRule(plateau_steps=30, min_improvement=0.1)
    assert stop_reason(rule, evals(1.0, "nan", "nan", "nan"), None) == "plateau"
    assert stop_reason(rule, evals("nan", "nan", "nan", "nan"), None) == "plateau"
    assert stop_reason(StopRule(diverged_ratio=10, diverged_evals=2),
                       evals(1.0, "inf", "nan"), baseline=1.0) == "diverged"


def test_diverged_is_non_finite_or_far_above_the_baseline_evals_in_a_row():
    rule = StopRule(diverged_ratio=100, diverged_evals=3)
    assert stop_reason(rule, evals(0.2, 50.0, float("nan"), 1e25), baseline=0.2) == "diverged"
    assert stop_reason(rule, evals(0.2, 50.0, 19.0, 1e25), baseline=0.2) is None  # 19 < 20
    # -inf is no loss either: not a new best, not solved
    assert stop_reason(StopRule(solved_fraction=0.5), evals(1.0, "-inf"), baseline=1.0) is None
    assert stop_reason(rule, evals(50.0, float("nan"), 0.3, float("inf")), baseline=0.2) is None
    assert stop_reason(rule, evals(float("nan"), float("nan")), baseline=0.2) is None  # 2 of 3
    assert "non-finite or > 100 x the trivial baseline at 3 evaluations in a row" in \
        rule.describe()


def test_an_inactive_rule_never_stops():
    assert stop_reason(StopRule(), evals(1.0, 1.0, 1.0, 0.0), baseline=1.0) is None


@pytest.mark.parametrize("section, field", [
    (dict(plateau_steps=-1), "stop.plateau_steps"),
    (dict(solved_fraction=1.5), "stop.solved_fraction"),
    (dict(min_improvement="a"), "stop.min_improvement"),
    (dict(patience=3), "stop.patience"),
    (dict(diverged_ratio=0.5), "stop.diverged_ratio"),  # under the baseline is no divergence
    (dict(diverged_evals=0), "stop.diverged_evals"),
])
def test_a_bad_rule_names_its_field(section, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        stop_rule({"stop": section})


def adding_config(steps=60, **stop):
    c = base_config(model=dict(name="gru", hidden=8), data=dict(name="adding", length=10),
                    steps=steps, batch_size=16, learning_rate=1e-3, eval_every=10,
                    checkpoint_every=30)
    c.data.num_eval = 64
    c.progress = False
    c.stop = dict(stop)
    return c


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_the_loop_stops_on_a_plateau_and_a_rerun_only_reports(tmp_path):
    # An improvement of 99% per eval never happens: the plateau ends the run 20 steps after
    # its first eval, at step 30 of at most 60.
    cfg = adding_config(plateau_steps=20, min_improvement=0.99)
    summary = train_and_evaluate(cfg, str(tmp_path))
    assert summary["step"] == 30
    assert summary["stopped"]["reason"] == "plateau"
    evals_written = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")
                     if '"eval"' in line]
    assert [e["step"] for e in evals_written] == [10, 20, 30]
    again = train_and_evaluate(cfg, str(tmp_path))
    assert again["step"] == 30 and again["train_seconds"] == summary["train_seconds"]
    rule = stop_rule(cfg).describe()
    assert finished_summary(str(tmp_path), 60, rule)["step"] == 30
    # A looser rule continues the same run (the rule is not part of its identity).
    looser = adding_config(plateau_steps=40, min_improvement=0.99)
    assert finished_summary(str(tmp_path), 60, stop_rule(looser).describe()) is None
    assert train_and_evaluate(looser, str(tmp_path))["step"] == 50


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_sweep_point_that_stopped_early_is_then_skipped(tmp_path, caplog):
    cfg = adding_config(steps=40, plateau_steps=10, min_improvement=0.99)
    rows = run_sweep([Point("p", cfg, dict(model="gru"))], str(tmp_path))
    assert rows[0]["stopped"]["reason"] == "plateau" and rows[0]["step"] == 20
    with caplog.at_level("INFO"):
        run_sweep([Point("p", cfg, dict(model="gru"))], str(tmp_path))
    assert "finished earlier, skipped" in caplog.text


def test_a_diverged_run_stops_and_a_rerun_only_reports(tmp_path):
    # Adam's first steps at a learning rate of 1e15 move every weight by about 1e15: the eval
    # loss is some 1e29, far above 100 x the baseline (1/6), from the first evaluation on.
    cfg = adding_config(steps=60, diverged_ratio=100, diverged_evals=2, plateau_steps=1000)
    cfg.optimizer.learning_rate, cfg.on_nonfinite = 1e15, "skip"
    summary = train_and_evaluate(cfg, str(tmp_path))
    assert summary["stopped"]["reason"] == "diverged" and summary["step"] == 20
    again = train_and_evaluate(cfg, str(tmp_path))
    assert again["step"] == 20 and again["train_seconds"] == summary["train_seconds"]


@pytest.mark.parametrize("field", ["solved_fraction", "diverged_ratio"])
def test_a_rule_against_the_baseline_needs_a_loss_baseline(tmp_path, field):
    cfg = adding_config(**{field: 0.5 if field == "solved_fraction" else 100.0})
    cfg.data = dict(name="digits", size=14)
    cfg.model = dict(name="gru", hidden=8)
    with pytest.raises(ConfigError, match=f"^stop.{field}"):
        train_and_evaluate(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
