"""Probing a sweep's points, and summarising the rows into the numbers the report states.

`ProbeHook` is a `cnn_rnn.sweep.run_sweep` after_point hook: for each point it probes the model
at initialisation (rebuilt from the config's seed, exactly as training built it) and at every
checkpoint the run saved, and caches the results in `<point>/probe.json`, so a rerun probes only
what is new. It also attaches the training history (loss, gradient norms, skipped steps per
logged window) from metrics.jsonl.

The summaries below are pure functions of the rows (dicts from run_sweep plus the hook's
fields). Rows carry the tags `task`, `T`, `arch`, `seed`, `group` ("main" or "clip") and `clip`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from cnn_rnn import sweep_record
from cnn_rnn.data.base import Batch, DataSource
from cnn_rnn.diagnostics import profiles
from cnn_rnn.diagnostics.gradient_flow import gradient_flow, make_probe
from cnn_rnn.diagnostics.spectra import candidate_radius
from cnn_rnn.training.loop import to_dict
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.reopen import RunReader

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
SUMMARY_LAYER = 0  # the bottom layer: the input at step t enters there, every path flows through
DEFAULT_BEAT_RATIO = 0.9


# --- probing one point -----------------------------------------------------------------------

def probe_batch(data: DataSource, size: int) -> Batch:
    """Return the first `size` evaluation examples, the same for every seed of a task.

    Where the task marks the steps that need memory (`accuracy_weights`: the copy task's recalled
    symbols), the probe's loss counts only those steps (`target_weights`), so ∂L/∂h_t measures how
    much of the recall error reaches step t rather than the trivially learnt blank outputs.
    """
    batch = dict(next(iter(data.eval_batches(size))))
    if "accuracy_weights" in batch:
        batch["target_weights"] = batch["accuracy_weights"]
    return batch


def _compact(value: Any, digits: int = 4) -> Any:
    """Round floats (recursively) to `digits` significant digits to keep JSON small."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, list):
        return [_compact(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _compact(v, digits) for k, v in value.items()}
    return value


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def training_history(workdir: str) -> list[dict[str, float]]:
    """Return the train windows of metrics.jsonl: step, loss, grad_norm, grad_norm_max, skipped.

    Non-finite values (written as strings by the metric writer) come back as float nan/inf.
    """
    keys = ("loss", "grad_norm", "grad_norm_max", "skipped")
    return [{"step": int(r["step"]), **{k: float(r[k]) for k in keys if k in r}}
            for r in read_metrics(workdir, "train")]


class PointStates(RunReader):
    """A sweep point's data, model and train states, at initialisation or at a checkpoint.

    `load_run`'s reader (the initial state rebuilt from the config's seed, exactly as training
    built it; checkpoints verified by their checksums), opened once for all of a point's steps.

    Args:
      cfg: the point's config as a dict (`training.loop.to_dict`).
      workdir: the point's folder.

    """

    def __init__(self, cfg: Mapping[str, Any], workdir: str):
        super().__init__(workdir, config=cfg)


class ProbeHook:
    """run_sweep after_point hook: probe init and every checkpoint of a point, with a cache.

    Args:
      batch_size: examples in the probe batch.
      num_probes: Gaussian vectors for the Jacobian-norm estimate (None or 0 = exact).
      threshold: relative level of "steps in the past".

    """

    def __init__(self, batch_size: int = 32, num_probes: int | None = 8,
                 threshold: float = profiles.DEFAULT_THRESHOLD):
        self.settings = {"batch_size": int(batch_size), "num_probes": num_probes or None,
                         "threshold": float(threshold)}

    def __call__(self, point: Any, workdir: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Return {"probes": [...by step], "history": [...]} for the point in `workdir`."""
        return {"probes": self.probe(point.config, workdir),
                "history": training_history(workdir)}

    def probe(self, config: Any, workdir: str) -> list[dict[str, Any]]:
        """Probe results for step 0 and every saved checkpoint, from the cache where possible."""
        path = os.path.join(workdir, PROBE_FILE)
        cached = _read_json(path) or {}
        sweep_record.check_cache_usable(workdir, "--config.probe", cached, self.settings)
        done: dict[str, Any] = cached.get("steps", {}) if cached.get(
            "settings") == self.settings else {}
        ckpt_dir = os.path.join(workdir, "checkpoints")
        saved = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit()) if os.path.isdir(
            ckpt_dir) else []
        todo = [s for s in [0, *saved] if str(s) not in done]
        if todo:
            done.update(self._run(config, workdir, todo))
            _write_json(path, {"settings": self.settings, "steps": done})
            log.info("%s: probed steps %s", os.path.basename(workdir), todo)
        else:
            log.info("%s: probes cached for steps %s", os.path.basename(workdir),
                     [0, *saved])
        return [done[k] for k in sorted(done, key=int)]

    def _run(self, config: Any, workdir: str, steps: Sequence[int]) -> dict[str, Any]:
        out = {}
        with PointStates(to_dict(config), workdir) as point:
            cfg, data, model = point.config, point.data, point.model
            batch = probe_batch(data, self.settings["batch_size"])
            fn = make_probe(model, data.spec, num_probes=self.settings["num_probes"])
            for step in steps:
                state = point.state(step)
                key = jax.random.fold_in(jax.random.PRNGKey(cfg["seed"]), step)
                flow = gradient_flow(model, state.variables(), batch, data.spec, key=key,
                                     num_probes=self.settings["num_probes"],
                                     threshold=self.settings["threshold"], probe=fn)
                out[str(step)] = _compact({"step": step, **flow.to_json()})
        return out


# --- summaries -------------------------------------------------------------------------------

def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _group(rows: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple, list[Mapping]]:
    out: dict[tuple, list[Mapping]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return dict(out)


def as_float(value: Any) -> float:
    """Return value as a float; nan for None or text that is not a number ("inf" stays inf).

    Non-finite metrics reach the rows as strings ("nan", "inf"), as the metric writer stores them.
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def final_loss(row: Mapping[str, Any]) -> float:
    """Return the row's final eval loss (nan when missing, inf/nan when training diverged)."""
    return as_float((row.get("eval") or {}).get("loss"))


def probe_at(row: Mapping[str, Any], when: str) -> Mapping[str, Any] | None:
    """Return the row's probe at "init" (step 0) or "final" (its last probed step)."""
    probes = row.get("probes") or []
    if not probes:
        return None
    return probes[0] if when == "init" else probes[-1]


def profile(row: Mapping[str, Any], when: str, layer: int = SUMMARY_LAYER,
            key: str = "grad_norm") -> np.ndarray | None:
    """Return a probed profile of `layer` (grad_norm, jacobian_norm or state_norm), or None.

    Missing values (non-finite when probed) are nan.
    """
    p = probe_at(row, when)
    if p is None:
        return None
    return np.array([np.nan if v is None else v for v in p[key][layer]], np.float64)


def decay_table(rows: Sequence[Mapping[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Per (task, arch, T): mean over seeds of decay rates and steps in the past, init and final.

    Computed on the bottom layer's profiles (SUMMARY_LAYER) of the "main" group: decay_* from
    ‖∂L/∂h_t‖, jacobian_decay_* from ‖∂h_T/∂h_t‖ (which does not depend on the loss).
    """
    out = []
    main = [r for r in rows if r.get("group") == "main"]
    for (task, arch, length), group in sorted(_group(main, "task", "arch", "T").items()):
        entry: dict[str, Any] = {"task": task, "arch": arch, "T": length}
        for when in ("init", "final"):
            profs = [p for p in (profile(r, when) for r in group) if p is not None]
            radii = [probe_at(r, when) for r in group]
            entry[f"decay_{when}"] = _mean(profiles.decay_rate(p) for p in profs)
            jacs = [p for p in (profile(r, when, key="jacobian_norm") for r in group)
                    if p is not None]
            entry[f"jacobian_decay_{when}"] = _mean(profiles.decay_rate(p) for p in jacs)
            entry[f"steps_{when}"] = _mean(profiles.steps_in_the_past(p, threshold)
                                           for p in profs)
            entry[f"radius_{when}"] = _mean(candidate_radius(p["spectral_radius"])
                                            for p in radii if p is not None)
        out.append(entry)
    return out


def common_lengths(table: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Return {task: the lengths at which every architecture of the task has a point}.

    In a finished grid these are all the lengths; in a run still in progress, the ones every
    architecture has reached, so that means over them compare like with like.
    """
    reached: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for e in table:
        reached[e["task"]][e["arch"]].add(e["T"])
    return {task: sorted(set.intersection(*archs.values())) for task, archs in reached.items()}


def decay_by_arch(table: Sequence[Mapping[str, Any]], when: str = "init",
                  lengths: Mapping[str, Sequence[int]] | None = None) -> dict[str, dict]:
    """Return {task: {arch: mean decay rate over `lengths`}} from `decay_table`.

    `lengths`: `common_lengths(table)` unless given (`analyse` computes it once for both stages).
    """
    lengths = common_lengths(table) if lengths is None else lengths
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    for (task, arch), group in _group(table, "task", "arch").items():
        out[task][arch] = _mean(e[f"decay_{when}"] for e in group if e["T"] in lengths[task])
    return dict(out)


def metric_vs_length(rows: Sequence[Mapping[str, Any]],
                     beat_ratio: float = DEFAULT_BEAT_RATIO) -> list[dict[str, Any]]:
    """Per (task, arch, T) of the main group: mean final eval loss, baseline, whether it beats it.

    "Beats the baseline" = mean eval loss over seeds < beat_ratio x the task's trivial baseline
    (a non-finite loss never does).
    """
    out = []
    main = [r for r in rows if r.get("group") == "main"]
    for (task, arch, length), group in sorted(_group(main, "task", "arch", "T").items()):
        # A diverged seed (non-finite loss) makes the mean non-finite: it does not beat anything.
        loss = float(np.mean([final_loss(r) for r in group]))
        base = group[0]["baseline"]["value"]
        out.append({"task": task, "arch": arch, "T": length, "loss": loss, "baseline": base,
                    "ratio": loss / base, "beats": bool(loss < beat_ratio * base),
                    "seeds": len(group)})
    return out


def failure_lengths(table: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return {task: {arch: the shortest tested T at which it does not beat the baseline}}.

    None when it beats the baseline at every tested length.
    """
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for (task, arch), group in _group(table, "task", "arch").items():
        fails = sorted(e["T"] for e in group if not e["beats"])
        out[task][arch] = fails[0] if fails else None
    return dict(out)


def clipping_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per "clip" group row: the exploding-gradient numbers with and without clipping.

    max_grad_norm is the largest finite pre-clipping gradient norm of any step (the trainer logs
    the norm before the optimizer clips it); skipped counts the steps whose loss or update was not
    finite (skipped, not applied); nonfinite_windows counts logged windows whose norm was not.
    """
    out = []
    for r in rows:
        if r.get("group") != "clip":
            continue
        hist = r.get("history") or []
        norms = np.array([h.get("grad_norm_max", np.nan) for h in hist], np.float64)
        finite = norms[np.isfinite(norms)]
        final = probe_at(r, "final")
        out.append({
            "task": r["task"], "arch": r["arch"], "T": r["T"], "seed": r["seed"],
            "clip": r["clip"], "lr": r.get("lr"),
            "max_grad_norm": float(finite.max()) if finite.size else None,
            "nonfinite_windows": int((~np.isfinite(norms)).sum()),
            "skipped": int(sum(h.get("skipped", 0.0) for h in hist)),
            "final_train_loss": as_float(hist[-1].get("loss")) if hist else float("nan"),
            "final_eval_loss": final_loss(r), "baseline": r["baseline"]["value"],
            "radius_final": None if final is None else candidate_radius(
                final["spectral_radius"])})
    return out


def analyse(rows: Sequence[Mapping[str, Any]], threshold: float = profiles.DEFAULT_THRESHOLD,
            beat_ratio: float = DEFAULT_BEAT_RATIO) -> dict[str, Any]:
    """Return every summary the report states, as one JSON-ready dict."""
    decay = decay_table(rows, threshold)
    metric = metric_vs_length(rows, beat_ratio)
    lengths = common_lengths(decay)
    return {"threshold": threshold, "beat_ratio": beat_ratio, "summary_layer": SUMMARY_LAYER,
            "decay": decay, "decay_lengths": lengths,
            "decay_by_arch": decay_by_arch(decay, "init", lengths),
            "decay_by_arch_final": decay_by_arch(decay, "final", lengths),
            "metric_vs_length": metric, "failure_length": failure_lengths(metric),
            "clipping": clipping_table(rows)}
