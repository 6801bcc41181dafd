"""When a run may stop before `steps`: solved, or on a plateau (config field `stop`, optional).

A comparison of architectures at a fixed step budget confuses "cannot learn this" with "had not
learned it yet", and giving every model the longest budget any of them needs is unaffordable on a
CPU. The rule below is applied the same way to every model, at each evaluation:

- **solved**: the eval `loss` is below `solved_fraction` x the task's trivial baseline
  (`TaskSpec.baseline`, e.g. 1/6 for the adding problem); 0 turns it off.
- **plateau**: the eval `loss` has not improved on its best by at least `min_improvement`
  (relative, e.g. 0.01 = 1%) for `plateau_steps` steps; 0 turns it off.

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


@dataclasses.dataclass(frozen=True)
class StopRule:
    """The solved / plateau rule; see the module docstring. All zeros: never stop early."""

    solved_fraction: float = 0.0
    plateau_steps: int = 0
    min_improvement: float = 0.01

    @property
    def active(self) -> bool:
        """Whether the rule can stop a run at all."""
        return self.solved_fraction > 0 or self.plateau_steps > 0

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
    return rule


def check_applies(rule: StopRule, baseline: float | None, baseline_metric: str | None) -> None:
    """Raise ConfigError if `solved_fraction` is set but the task has no loss baseline."""
    if rule.solved_fraction > 0 and (baseline is None or baseline_metric != METRIC):
        raise ConfigError("stop.solved_fraction", f"needs a task with a trivial {METRIC} "
                          f"baseline (this one has {baseline_metric!r}); accepted: 0 (off) here")


def stop_reason(rule: StopRule, evals: Sequence[Mapping[str, Any]],
                baseline: float | None) -> str | None:
    """"solved", "plateau" or None, from the eval records so far (each with `step` and `loss`).

    Pure: the same records give the same answer, which is what makes a resumed run stop where an
    uninterrupted one would. Non-finite losses count as no improvement.
    """
    points = [(int(e["step"]), float(e[METRIC])) for e in evals
              if isinstance(e.get(METRIC), int | float)]
    if not rule.active or not points:
        return None
    step, loss = points[-1]
    if rule.solved_fraction > 0 and baseline is not None and loss < rule.solved_fraction * baseline:
        return "solved"
    if rule.plateau_steps > 0:
        best, record = math.inf, points[0][0]
        for s, value in points:
            if value < best * (1.0 - rule.min_improvement):
                best, record = value, s
        if step - record >= rule.plateau_steps:
            return "plateau"
    return None
