"""When a run may stop before `steps`: solved, on a plateau, or diverged (config field `stop`).

A comparison of architectures at a fixed step budget confuses "cannot learn this" with "had not
learned it yet", and giving every model the longest budget any of them needs is unaffordable on a
CPU. The rule below is applied the same way to every model, at each evaluation:

- **solved**: the eval `loss` is below `solved_fraction` x the task's trivial baseline
  (`TaskSpec.baseline`, e.g. 1/6 for the adding problem); 0 turns it off.
- **plateau**: the eval `loss` has not improved on its best by at least `min_improvement`
  (relative, e.g. 0.01 = 1%) for `plateau_steps` steps; 0 turns it off.
- **diverged**: the eval `loss` is non-finite or above `diverged_ratio` x the baseline at the
  last `diverged_evals` evaluations in a row; 0 turns it off. Such a network has every update
  skipped as non-finite (`on_nonfinite="skip"`) or is far past any useful loss; waiting for its
  plateau only spends the machine.

`steps` stays the most a run may take. The rule reads the eval records (metrics.jsonl), so a
resumed run decides exactly as an uninterrupted one; a run that stopped reports the step and the
reason in its summary, and running it again only reports. The rule may change between sessions
of a run (it is in run_record.MAY_CHANGE): a looser rule continues a stopped run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_rnn.config_checks import check_int, check_number
from cnn_rnn.errors import ConfigError

METRIC = "loss"  # lower is better; every task reports it
# A loss this many times the trivial baseline is a diverged network (the `paper` ablation's
# rule, and how its figures mark such points). Far above chance too: an untrained copy model's
# ln 9 per step is 108x the copy baseline at T = 1000.
DIVERGED_RATIO = 1000.0
NON_FINITE = ("nan", "inf", "-inf")  # how metrics.jsonl stores non-finite values


@dataclasses.dataclass(frozen=True)
class StopRule:
    """The solved / plateau rule; see the module docstring. All zeros: never stop early."""

    solved_fraction: float = 0.0
    plateau_steps: int = 0
    min_improvement: float = 0.01
    diverged_ratio: float = 0.0
    diverged_evals: int = 3

    @property
    def active(self) -> bool:
        """Whether the rule can stop a run at all."""
        return self.solved_fraction > 0 or self.plateau_steps > 0 or self.diverged_ratio > 0

    def describe(self, baseline: float | None = None) -> str:
        """One sentence stating the rule (with the solved threshold when `baseline` is given)."""
        parts = []
        if self.solved_fraction > 0:
            at = "" if baseline is None else f" = {self.solved_fraction * baseline:.3g}"
            parts.append(f"solved when the eval loss < {self.solved_fraction:g} x the trivial "
                         f"baseline{at}")
        if self.plateau_steps > 0:
            parts.append(f"stopped on a plateau when the best eval loss has not improved by "
                         f"{self.min_improvement:.0%} for {self.plateau_steps:,} steps")
        if self.diverged_ratio > 0:
            parts.append(f"stopped as diverged when the eval loss is non-finite or > "
                         f"{self.diverged_ratio:g} x the trivial baseline at "
                         f"{self.diverged_evals} evaluations in a row")
        return "; ".join(parts) if parts else "no early stop"


def stop_rule(cfg: Mapping[str, Any]) -> StopRule:
    """The validated StopRule of a config dict (absent `stop` section: never stops early)."""
    section = cfg.get("stop") or {}
    unknown = set(section) - {f.name for f in dataclasses.fields(StopRule)}
    if unknown:
        raise ConfigError(f"stop.{sorted(unknown)[0]}", "unknown field; accepted: "
                          + ", ".join(f.name for f in dataclasses.fields(StopRule)))
    rule = StopRule(**section)
    check_number("stop.solved_fraction", rule.solved_fraction, below=1.0)
    check_int("stop.plateau_steps", rule.plateau_steps, 0)
    check_number("stop.min_improvement", rule.min_improvement, below=1.0)
    ratio = check_number("stop.diverged_ratio", rule.diverged_ratio)
    if 0 < ratio <= 1:  # at or under the baseline is no divergence
        raise ConfigError("stop.diverged_ratio", f"must be 0 (off) or > 1, got {ratio:g}")
    check_int("stop.diverged_evals", rule.diverged_evals, 1)
    return rule


def check_applies(rule: StopRule, baseline: float | None, baseline_metric: str | None) -> None:
    """Raise ConfigError if a field measured against the baseline is set but the task has none."""
    for field in ("solved_fraction", "diverged_ratio"):
        if getattr(rule, field) > 0 and (baseline is None or baseline_metric != METRIC):
            raise ConfigError(f"stop.{field}", f"needs a task with a trivial {METRIC} baseline "
                              f"(this one has {baseline_metric!r}); accepted: 0 (off) here")


def _finite_or_nan(value: float | str) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan  # never a best, never solved


def stop_reason(rule: StopRule, evals: Sequence[Mapping[str, Any]],
                baseline: float | None) -> str | None:
    """"solved", "plateau", "diverged" or None, from the eval records so far (`step`, `loss`).

    Pure: the same records give the same answer, which is what makes a resumed run stop where an
    uninterrupted one would: a non-finite loss reads the same as a float or as the string the
    metrics file stores ("nan", "inf"). Non-finite losses count as no improvement.
    """
    points = [(int(e["step"]), _finite_or_nan(e[METRIC])) for e in evals
              if isinstance(e.get(METRIC), int | float) or e.get(METRIC) in NON_FINITE]
    if not rule.active or not points:
        return None
    step, loss = points[-1]
    if rule.solved_fraction > 0 and baseline is not None and loss < rule.solved_fraction * baseline:
        return "solved"
    if rule.diverged_ratio > 0 and baseline is not None:
        last = [v for _, v in points[-rule.diverged_evals:]]
        if len(last) == rule.diverged_evals and all(
                not math.isfinite(v) or v > rule.diverged_ratio * baseline for v in last):
            return "diverged"
    if rule.plateau_steps > 0:
        best, record = math.inf, points[0][0]
        for s, value in points:
            if value < best * (1.0 - rule.min_improvement):
                best, record = value, s
        if step - record >= rule.plateau_steps:
            return "plateau"
    return None
