"""Run bookkeeping around the training loop: the workdir, the run's identity, time, the summary.

What the loop needs to resume a run as if it had never stopped, and to report it: which config
fields define the run (and must match its checkpoints), how many training seconds earlier
sessions spent, and the summary.json a finished run leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from cnn_rnn import paths
from cnn_rnn.data.base import DataSource
from cnn_rnn.errors import ConfigError
from cnn_rnn.training.config import complete_sections
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.optim import learning_rate_schedule

log = logging.getLogger(__name__)

# Fields that may differ between the sessions of one run: the length (steps) and how the run
# reports and checkpoints itself. Everything else (model, data, seed, batch size, optimizer,
# anything a config adds) defines the experiment and must match the checkpoints.
MAY_CHANGE = ("steps", "progress", "eval_every", "log_every", "checkpoint_every",
              "keep_checkpoints", "on_nonfinite", "eval_batch_size", "parallelism", "stop")
# The only fields that checkpoint records written before the whole config was stored hold.
_LEGACY_FIELDS = ("model", "data", "seed", "batch_size")
_ABSENT = "(absent)"


write_json_atomic = paths.write_json_atomic  # re-exported: a crash leaves old or new


# What a run keeps in its workdir: folders and files. Something else in their place (a file
# where checkpoints/ should be, a folder named metrics.jsonl) is refused before anything is read.
WORKDIR_FOLDERS = ("checkpoints", "tensorboard")
WORKDIR_FILES = ("config.json", "metrics.jsonl", "summary.json", ".lock")


def check_workdir_entries(workdir: str) -> None:
    """Raise ConfigError (field "workdir") if the workdir or one of its entries has the wrong kind.

    A workdir that is a regular file, `checkpoints/` replaced by a file, `metrics.jsonl` a folder:
    each is named in one line before any library trips over it.
    """
    paths.check_reachable(workdir)  # an offline bucket: one line, before anything else
    if paths.isfile(workdir):
        raise ConfigError("workdir", f"{workdir!r} is a file, not a directory; accepted: a new "
                          "or existing directory")
    for name in WORKDIR_FOLDERS:
        path = paths.join(workdir, name)
        if paths.isfile(path):
            raise ConfigError("workdir", f"{path!r} should be the run's {name} folder but is a "
                              "file; move it away or use a new --workdir")
    for name in WORKDIR_FILES:
        path = paths.join(workdir, name)
        if paths.isdir(path):
            raise ConfigError("workdir", f"{path!r} should be the run's {name} file but is a "
                              "directory; move it away or use a new --workdir")


def prepare_workdir(workdir: str) -> None:
    """Create `workdir` if needed; raise ConfigError (field "workdir") if it cannot be written."""
    check_workdir_entries(workdir)
    make_writable_folder(workdir, "workdir")


def make_writable_folder(path: str, field: str) -> None:
    """Create the folder `path` if needed; ConfigError naming `field` if it cannot be written.

    The workdir's check (field "workdir") and a sweep's record's ("--record").
    """
    try:
        paths.makedirs(path)
    except OSError as e:
        raise ConfigError(field, f"cannot create {path!r}: {e.strerror or e}") from e
    if not paths.is_object_store(path) and not os.access(path, os.W_OK):
        raise ConfigError(field, f"{path!r} is not writable")


def run_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config that must not change between sessions of one run."""
    return {k: v for k, v in cfg.items() if k not in MAY_CHANGE}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # A None field means "the default", as an absent one does (configs list every source keyword
    # as a typed None), so a run recorded before a field was listed is still the same run.
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif v is not None:
            out[f"{prefix}{k}"] = v
    return out


def check_same_run(meta: Mapping[str, Any], config: Mapping[str, Any], *,
                   field: str = "workdir", held: str = "checkpoints of a different run",
                   remedy: str = "a new --workdir") -> None:
    """Raise ConfigError naming every field (old -> new) in which `config` leaves the run.

    Both sides are compared with every default filled in (`complete_sections`), so a run
    recorded before a field was listed, or with a field left at its default, is the same run.
    `field`, `held` and `remedy` word the error for the folder that holds the run (a sweep's
    record: "--record ...", "a run of another config", "another --record").
    """
    if "config" in meta:
        old = _flatten(complete_sections(meta["config"]))
        new = _flatten(complete_sections(run_identity(config)))
    else:  # an older record: compare what it holds
        held = {k: meta[k] for k in _LEGACY_FIELDS if k in meta}
        old = _flatten(complete_sections(held))
        new = _flatten(complete_sections({k: config.get(k) for k in held}))
    diffs = [f"{k}: {old.get(k, _ABSENT)!r} -> {new.get(k, _ABSENT)!r}"
             for k in sorted(old.keys() | new.keys()) if old.get(k, _ABSENT) != new.get(k, _ABSENT)]
    if diffs:
        raise ConfigError(field, f"holds {held} ({'; '.join(diffs)}); "
                          f"{_keep_hint(old, new)}use {remedy} or the original config "
                          f"(only {', '.join(MAY_CHANGE)} may change)")


# Fields that follow `steps` unless set (configs/common.py): extending a run moves them.
FOLLOW_STEPS = ("optimizer.warmup_steps",)


def _keep_hint(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`to extend the run keep --config.X=old; ` for changed fields that follow `steps`."""
    kept = [f"--config.{k}={old[k]}" for k in FOLLOW_STEPS
            if k in old and old.get(k) != new.get(k, _ABSENT)]
    return f"to change steps and continue this run, keep {' '.join(kept)}; or " if kept else ""


def checkpoint_meta(cfg: Mapping[str, Any], train_seconds: float,
                    window: list[Any]) -> dict[str, Any]:
    """The record saved beside each checkpoint.

    The run's identity, its length, its training time so far and the open train-metrics window
    (TrainWindow.pending()), so that a resumed run logs what an uninterrupted one logs.
    """
    return {"config": run_identity(cfg), "steps": cfg["steps"], "train_seconds": train_seconds,
            "window": window}


def _summary_seconds(workdir: str, step: int) -> float | None:
    """train_seconds of the summary.json written at `step`, if there is one."""
    try:
        summary = json.loads(paths.read_text(paths.join(workdir, "summary.json")))
        return float(summary["train_seconds"]) if summary.get("step") == step else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def previous_seconds(workdir: str, meta: Mapping[str, Any], step: int, finished: bool) -> float:
    """Training seconds of the earlier sessions that produced the checkpoint at `step`."""
    summary = _summary_seconds(workdir, step)
    if finished and summary is not None:
        return summary  # a rerun of a finished run reports what it reported before
    if "train_seconds" in meta:
        return float(meta["train_seconds"])
    # A record from before train_seconds was stored: a finished run's summary still has it.
    return summary if summary is not None else 0.0


def warn_if_schedule_stretched(meta: Mapping[str, Any], cfg: Mapping[str, Any],
                               start: int) -> None:
    """Warn when a changed `steps` re-stretches a decaying learning-rate schedule from `start`."""
    old_steps, opt = meta.get("steps"), cfg["optimizer"]
    if old_steps in (None, cfg["steps"]) or opt["schedule"] == "constant":
        return
    before = float(learning_rate_schedule(opt, int(old_steps))(start))
    after = float(learning_rate_schedule(opt, cfg["steps"])(start))
    log.warning("steps changed from %d to %d: the %s learning-rate schedule now decays over the "
                "new total, so at step %d the rate goes from %.3g to %.3g", old_steps,
                cfg["steps"], opt["schedule"], start, before, after)


def finished_summary(workdir: str, cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary of the run in `workdir` if it already reached `cfg`'s steps, else None.

    Read from summary.json, config.json and the checkpoint folders' names, without building
    data or model, so that rerunning a finished run costs no more than reading three files. The
    newest checkpoint must be the summary's step (else the loop decides, e.g. a longer run that
    was interrupted). ConfigError when config.json is another run's, as resuming would say.
    """
    try:
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
            saved = json.load(f)
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except (OSError, ValueError):
        return None
    newest = max((int(n) for n in names if n.isdigit()), default=None)
    if not isinstance(summary, dict) or not isinstance(saved, dict):
        return None
    if not summary.get("step") == newest == cfg["steps"]:
        return None
    check_same_run({"config": run_identity(saved)}, cfg)
    return summary


def baseline_text(data: DataSource) -> str:
    """`trivial baseline metric=value (note)`, said once before the eval lines, or ""."""
    spec = data.spec
    if spec.baseline is None:
        return ""
    note = f" ({spec.baseline_note})" if spec.baseline_note else ""
    return f"trivial baseline {spec.baseline_metric}={spec.baseline:.4g}{note}"


def write_summary(workdir: str, cfg: Mapping[str, Any], data: DataSource, n_params: int,
                  step: int, seconds: float, n_dev: int, write: bool = True,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return summary.json (written unless `write`): what ran, how long, its last eval metrics.

    `extra` fields are added as they are (the loop's early stop: step, reason and rule).
    """
    evals = read_metrics(workdir, "eval")
    spec = data.spec
    summary = {"model": cfg["model"]["name"], "data": cfg["data"]["name"], "params": n_params,
               "step": step, "train_seconds": round(seconds, 2), "devices": n_dev,
               "per_device_batch": cfg["batch_size"] // n_dev,
               "baseline": {"metric": spec.baseline_metric, "value": spec.baseline,
                            "note": spec.baseline_note},
               "eval": {k: v for k, v in (evals[-1] if evals else {}).items()
                        if k not in ("step", "split")}, **(extra or {})}
    if write:
        write_json_atomic(paths.join(workdir, "summary.json"), summary)
    return summary


def summary_line(summary: Mapping[str, Any]) -> str:
    """One human line of a summary (model, data, step, params, eval metrics, time)."""
    # Non-finite values are stored as "nan"/"inf" strings (strict JSON): print them too.
    ev = ", ".join(f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}"
                   for k, v in summary["eval"].items()
                   if isinstance(v, int | float) or v in ("nan", "inf", "-inf"))
    base = summary["baseline"]
    base_text = "" if base["value"] is None else f" (baseline {base['metric']}={base['value']:.4g})"
    return (f"{summary['model']} on {summary['data']}: step {summary['step']}, "
            f"{summary['params']:,} params, eval {ev}{base_text}, "
            f"{summary['train_seconds']:.1f}s training")
