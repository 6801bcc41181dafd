"""Newton solvers (DEER, quasi-DEER) on an ablation's trained points at long sequence lengths.

The vanishing-gradient ablation trains every (task, architecture, length) point under its budget
rule; `NewtonHook` then takes each trained recurrent point at T >= `min_length`, restores its last
checkpoint, and solves its bottom layer for all steps at once on a probe batch
(`newton.make_measure`: iterations of each method, errors against the scan, the largest Lyapunov
exponent and the gradient decay rate). Networks trained at the papers' lengths, solved in
parallel. Its rows carry the fields of `newton_report`'s table and figure and each method's wall
time; cached per point in newton.json (a rerun with the same settings and step measures nothing),
and per method while the point's solves run, so that a stopped run loses at most one method's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnn_rnn import sweep_record
from cnn_rnn.config_checks import check_choice
from cnn_rnn.diagnostics.ablation import PointStates, _read_json, _write_json, probe_batch
from cnn_rnn.diagnostics.newton import make_measure
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.rnn.parallel_in_time import LINEAR_SOLVES
from cnn_rnn.training.loop import to_dict

NEWTON_FILE = "newton.json"
PARTIAL_FILE = "newton.partial.json"  # the methods solved so far, while the point's are running
RECURRENT = ("rnn", "irnn", "lstm", "gru")  # cells with a flat step (TCN, LRU have none)
log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A JSON value from a measurement's number, bool or array scalar."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return float(value) if np.ndim(value) == 0 else np.asarray(value).tolist()


def cached_row(point_dir: str) -> dict[str, Any] | None:
    """The Newton row cached in a point's folder by `NewtonHook`, or None."""
    cached = _read_json(os.path.join(point_dir, NEWTON_FILE))
    return _with_solve(cached) if cached else None


def _with_solve(cached: Mapping[str, Any]) -> dict[str, Any]:
    """A cache's row with the linear solve its settings name, for the report's sentence."""
    return {**cached["row"], "linear_solve": cached["settings"].get("linear_solve", "auto")}


@dataclasses.dataclass(frozen=True)
class NewtonHook:
    """run_sweep after_point hook: Newton solves of a trained point's bottom recurrent layer.

    Attributes:
      min_length: only points with T >= this (shorter ones return nothing).
      batch_size: probe-batch examples the solvers run on.
      tol: Newton's convergence tolerance on max |dh|.
      methods: solver names ("deer", "quasi_deer").
      linear_solve: how each Newton iteration's linear recurrence is solved
        (`parallel_in_time.SolverOptions`): "sequential" by default, since the question here is
        how many iterations a trained network needs, which does not depend on it, and on a CPU
        it costs O(T H^2) per DEER iteration where the associative scan costs O(T H^3)
        (measured: docs/parallel_in_time.md).

    """

    min_length: int = 600
    batch_size: int = 4
    tol: float = 1e-5
    methods: tuple[str, ...] = ("deer", "quasi_deer")
    linear_solve: str = "sequential"

    @classmethod
    def from_config(cls, newton: Mapping[str, Any]) -> NewtonHook:
        """The hook of a sweep config's `newton` section (fields as above; ConfigError if bad)."""
        unknown = sorted(set(newton) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"newton.{unknown[0]}", "unknown field; accepted: " + ", ".join(
                f.name for f in dataclasses.fields(cls)))
        check_choice("newton.linear_solve", newton.get("linear_solve", cls.linear_solve),
                     LINEAR_SOLVES)
        return cls(**{k: tuple(v) if k == "methods" else v for k, v in newton.items()})

    def applies(self, row: Mapping[str, Any]) -> bool:
        """Whether the point is a trained recurrent point of the main grid at a long length."""
        return (row.get("group", "main") == "main" and row.get("arch") in RECURRENT
                and int(row.get("T", 0)) >= self.min_length)

    def __call__(self, point: Any, workdir: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"newton": row for newton_report} for a point it applies to, else {}.

        A point whose trained network diverged (non-finite eval loss, or stopped as diverged by
        the budget rule: a loss of 1e32 is finite) gets {"newton_skipped": why} instead: its
        report names it rather than tabulating iterations of an overflow.
        """
        if not self.applies(row):
            return {}
        loss = row["eval"].get("loss")
        if (not (isinstance(loss, int | float) and math.isfinite(loss))
                or (row.get("stopped") or {}).get("reason") == "diverged"):
            # Its states overflow: Newton's iterates would only measure the overflow.
            log.info("%s: no Newton solves, its network diverged (eval loss %s)",
                     os.path.basename(workdir), loss)
            return {"newton_skipped": f"its network diverged, eval loss {loss}"}
        settings = {"batch_size": self.batch_size, "tol": self.tol,
                    "methods": list(self.methods), "linear_solve": self.linear_solve,
                    "step": int(row["step"])}
        path = os.path.join(workdir, NEWTON_FILE)
        cached = _read_json(path) or {}
        if cached.get("settings") == settings:
            return {"newton": _with_solve(cached)}
        sweep_record.check_cache_usable(workdir, "--config.newton", cached, settings)
        measured = self._measure(point, workdir, row, settings)
        out = {"task": row["task"], "arch": row["arch"], "stage": "trained", "scale": 1.0,
               "loss": row["eval"]["loss"], "accuracy": row["eval"].get("accuracy"),
               "baseline": row["baseline"]["value"], "baseline_metric": row["baseline"]["metric"],
               **measured}
        record = {"settings": settings, "row": out}
        _write_json(path, record)
        os.remove(os.path.join(workdir, PARTIAL_FILE))
        return {"newton": _with_solve(record)}

    def _measure(self, point: Any, workdir: str, row: Mapping[str, Any],
                 settings: Mapping[str, Any]) -> dict[str, Any]:
        """Each method's solve, saved to PARTIAL_FILE as it finishes.

        One solve at T = 1000 can take an hour on a CPU core; a run stopped between methods
        then resumes at the next one instead of starting the point's solves again.
        `seconds_<method>`: its wall time, compilation and the gradient check included.
        """
        partial_path = os.path.join(workdir, PARTIAL_FILE)
        partial = _read_json(partial_path) or {}
        measured = dict(partial["measured"]) if partial.get("settings") == settings else {}
        todo = [m for m in self.methods if f"iterations_{m}" not in measured]
        name, length = os.path.basename(workdir), int(row["T"])
        done = [m for m in self.methods if m not in todo]
        log.info("%s: Newton solves (%s) at T=%d, up to 2T + 1 iterations each%s", name,
                 ", ".join(todo), length, f" ({', '.join(done)} solved before)" if done else "")
        with PointStates(to_dict(point.config), workdir) as states:
            batch = probe_batch(states.data, self.batch_size)
            params = states.state(int(row["step"])).params
            for method in todo:
                start = time.time()
                measure = make_measure(states.model, states.data.spec, batch,
                                       types.SimpleNamespace(tol=self.tol, methods=(method,),
                                                             linear_solve=self.linear_solve))
                measured.update({k: _plain(v) for k, v in measure(params).items()})
                measured[f"seconds_{method}"] = round(time.time() - start, 1)
                _write_json(partial_path, {"settings": settings, "measured": measured})
                log.info("%s: %s at step %d: %d iterations, %.0f s", name, method, row["step"],
                         measured[f"iterations_{method}"], measured[f"seconds_{method}"])
        return measured
