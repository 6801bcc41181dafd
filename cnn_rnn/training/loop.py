"""The training loop: `train_and_evaluate(config, workdir)`, independent of any model or data.

Order of work, so that bad input never leaves anything behind: validate the config, build data
and model (unknown names and kwargs fail here), check the batch splits over the devices, and only
then create the workdir, write the resolved config, and restore the newest checkpoint, if any.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import optax
from tqdm import tqdm

from cnn_rnn.data.base import DataSource
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.training import parallel
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.losses import finalize
from cnn_rnn.training.metrics import MetricWriter, read_metrics
from cnn_rnn.training.optim import build_optimizer, learning_rate_schedule
from cnn_rnn.training.state import TrainState, create_train_state, param_count
from cnn_rnn.training.steps import eval_step, train_step
from cnn_rnn.training.validation import validate_config
from cnn_rnn.training.workdir_lock import WorkdirLock

log = logging.getLogger(__name__)
# Durations only (never stored as a time of day); a module attribute so tests can replace it.
_clock = time.monotonic


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient and the config says to stop."""


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-dict copy of a ConfigDict (or mapping)."""
    return json.loads(config.to_json()) if hasattr(config, "to_json") else json.loads(
        json.dumps(dict(config)))


def _sums_to_metrics(sums: Mapping[str, Any]) -> dict[str, float]:
    pairs = {k[: -len("_sum")]: (sums[k], sums[k[: -len("_sum")] + "_count"])
             for k in sums if k.endswith("_sum")}
    return finalize(pairs)


def evaluate(p_eval: Any, state: TrainState, data: DataSource, batch_size: int,
             n_dev: int) -> dict[str, float]:
    """Metrics of the replicated `state` over the whole fixed eval set."""
    total: dict[str, float] = {}
    for batch in data.eval_batches(batch_size):
        out = jax.device_get(p_eval(state, parallel.shard(batch, n_dev)))
        for k, v in out.items():
            total[k] = total.get(k, 0.0) + float(np.asarray(v)[0])
    return _sums_to_metrics(total)


def _write_json_atomic(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def prepare_workdir(workdir: str) -> None:
    """Create `workdir` if needed; raise ConfigError (field "workdir") if it cannot be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError("workdir", f"cannot create {workdir!r}: {e.strerror or e}") from e
    if not os.access(workdir, os.W_OK):
        raise ConfigError("workdir", f"{workdir!r} is not writable")


# Fields that may differ between the sessions of one run: the length (steps) and how the run
# reports and checkpoints itself. Everything else (model, data, seed, batch size, optimizer,
# anything a config adds) defines the experiment and must match the checkpoints.
MAY_CHANGE = ("steps", "progress", "eval_every", "log_every", "checkpoint_every",
              "keep_checkpoints", "on_nonfinite")
# The only fields that checkpoint records written before the whole config was stored hold.
_LEGACY_FIELDS = ("model", "data", "seed", "batch_size")
_ABSENT = "(absent)"


def run_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config that must not change between sessions of one run."""
    return {k: v for k, v in cfg.items() if k not in MAY_CHANGE}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_run(meta: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every field (old -> new) in which `config` leaves the run."""
    if "config" in meta:
        old, new = _flatten(meta["config"]), _flatten(run_identity(config))
    else:  # an older record: compare what it holds
        held = {k: meta[k] for k in _LEGACY_FIELDS if k in meta}
        old, new = _flatten(held), _flatten({k: config.get(k) for k in held})
    diffs = [f"{k}: {old.get(k, _ABSENT)!r} -> {new.get(k, _ABSENT)!r}"
             for k in sorted(old.keys() | new.keys()) if old.get(k, _ABSENT) != new.get(k, _ABSENT)]
    if diffs:
        raise ConfigError("workdir", f"holds checkpoints of a different run ({'; '.join(diffs)}); "
                          "use a new --workdir or the original config (only "
                          f"{', '.join(MAY_CHANGE)} may change)")


def _summary_seconds(workdir: str, step: int) -> float | None:
    """train_seconds of the summary.json written at `step`, if there is one."""
    try:
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
        return float(summary["train_seconds"]) if summary.get("step") == step else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _previous_seconds(workdir: str, meta: Mapping[str, Any], step: int,
                      finished: bool) -> float:
    """Training seconds of the earlier sessions that produced the checkpoint at `step`."""
    summary = _summary_seconds(workdir, step)
    if finished and summary is not None:
        return summary  # a rerun of a finished run reports what it reported before
    if "train_seconds" in meta:
        return float(meta["train_seconds"])
    # A record from before train_seconds was stored: a finished run's summary still has it.
    return summary if summary is not None else 0.0


def _warn_if_schedule_stretched(meta: Mapping[str, Any], cfg: Mapping[str, Any],
                                start: int) -> None:
    # A decaying schedule is built over `steps`: extending the run re-stretches it from here.
    old_steps, opt = meta.get("steps"), cfg["optimizer"]
    if old_steps in (None, cfg["steps"]) or opt.get("schedule", "constant") == "constant":
        return
    before = float(learning_rate_schedule(opt, int(old_steps))(start))
    after = float(learning_rate_schedule(opt, cfg["steps"])(start))
    log.warning("steps changed from %d to %d: the %s learning-rate schedule now decays over the "
                "new total, so at step %d the rate goes from %.3g to %.3g", old_steps,
                cfg["steps"], opt["schedule"], start, before, after)


def build_run(cfg: Mapping[str, Any], data: DataSource | None = None
              ) -> tuple[DataSource, Any, optax.GradientTransformation]:
    """Check the batch split and build the data source (unless given), model and optimizer.

    `cfg` is a validated config dict; ConfigError for a value that does not build.
    """
    parallel.check_batch_size(cfg["batch_size"], parallel.device_count())
    data = build_data(cfg["data"], seed=cfg["seed"]) if data is None else data
    model = build_model(cfg["model"], data.spec, axis_name=parallel.AXIS)
    return data, model, build_optimizer(cfg["optimizer"], cfg["steps"])


@contextlib.contextmanager
def init_errors_as_config(cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> Iterator[None]:
    """Turn a ValueError raised while initialising the model into a one-line ConfigError.

    E.g. a sequence longer than a Transformer's max_len: a config problem, found before anything
    is written.
    """
    try:
        yield
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError("model", f"{cfg['model']['name']!r} cannot take inputs of shape "
                          f"{input_shape}: {str(e).splitlines()[0]}") from e


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Train the configured model on the configured data, evaluating and checkpointing.

    Resumes from the newest checkpoint in `<workdir>/checkpoints` if there is one; a run already
    at `config.steps` only reports. Returns the summary also written to `<workdir>/summary.json`.
    """
    cfg = to_dict(config)
    validate_config(cfg)
    n_dev = parallel.device_count()
    data, model, tx = build_run(cfg)
    with init_errors_as_config(cfg, data.spec.input_shape):
        state = create_train_state(model, tx, data.spec.input_shape,
                                   jax.random.PRNGKey(cfg["seed"]))
    n_params = param_count(state.params)

    prepare_workdir(workdir)
    with WorkdirLock(workdir):
        return _train_locked(cfg, workdir, data, model, state, n_params, n_dev)


def _train_locked(cfg: dict[str, Any], workdir: str, data: DataSource, model: Any,
                  state: TrainState, n_params: int, n_dev: int) -> dict[str, Any]:
    """The part of train_and_evaluate that writes to the workdir (its lock held)."""
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), cfg["keep_checkpoints"])
    identity = run_identity(cfg)
    try:
        restored = ckpt.restore_latest(state, check_meta=lambda m: check_same_run(m, cfg))
    except ConfigError:
        ckpt.close()
        raise
    _write_json_atomic(os.path.join(workdir, "config.json"), cfg)
    start, seconds_before = 0, 0.0
    if restored is not None:
        state = restored[0]
        start = int(state.step)
        seconds_before = _previous_seconds(workdir, restored[1], start,
                                           finished=start >= cfg["steps"])
        log.info("resuming from checkpoint at step %d of %d", start, cfg["steps"])
        if start < cfg["steps"]:
            _warn_if_schedule_stretched(restored[1], cfg, start)
    log.info("model %s: %s parameters; data %s %s; %d device(s), %d examples per device",
             cfg["model"]["name"], f"{n_params:,}", cfg["data"]["name"], data.spec.input_shape,
             n_dev, cfg["batch_size"] // n_dev)
    if start >= cfg["steps"]:
        ckpt.close()
        summary = _summary(workdir, cfg, data, n_params, start, seconds_before, n_dev)
        log.info("already finished: %s", _summary_line(summary))
        return summary

    p_train = parallel.pmap_step(train_step, donate_state=True, model=model, spec=data.spec)
    p_eval = parallel.pmap_step(eval_step, model=model, spec=data.spec)
    writer = MetricWriter(workdir, resume_step=start)
    lr_at = learning_rate_schedule(cfg["optimizer"], cfg["steps"])
    state = parallel.replicate(state)
    window: list[tuple[int, Any]] = []
    t0 = _clock()
    bar = tqdm(total=cfg["steps"], initial=start, disable=not cfg.get("progress", True),
               unit="step", dynamic_ncols=True, mininterval=1.0)
    try:
        for step in range(start, cfg["steps"]):
            batch = parallel.shard(data.train_batch(step, cfg["batch_size"]), n_dev)
            state, metrics = p_train(state, batch)
            window.append((step + 1, metrics))
            done = step + 1
            bar.update(1)
            last = done == cfg["steps"]
            if done % cfg["log_every"] == 0 or last:
                train = _flush_window(window, cfg, lr_at)
                writer.write(done, "train", train)
                bar.set_postfix(loss=f"{train['loss']:.4g}", refresh=False)
            if done % cfg["eval_every"] == 0 or last:
                ev = evaluate(p_eval, state, data, cfg["batch_size"], n_dev)
                writer.write(done, "eval", ev)
                line = (f"step {done}: eval " + ", ".join(f"{k}={v:.4g}" for k, v in ev.items())
                        + _baseline_text(data))
                if cfg.get("progress", True):
                    bar.write(line)
                else:
                    log.info(line)
            if done % cfg["checkpoint_every"] == 0 or last:
                # The seconds so far travel with the checkpoint, so they survive a SIGKILL.
                meta = {"config": identity, "steps": cfg["steps"],
                        "train_seconds": seconds_before + _clock() - t0}
                ckpt.save(done, jax.device_get(parallel.unreplicate(state)), meta)
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    summary = _summary(workdir, cfg, data, n_params, cfg["steps"],
                       seconds_before + _clock() - t0, n_dev)
    log.info("finished: %s", _summary_line(summary))
    return summary


def _flush_window(window: list[tuple[int, Any]], cfg: Mapping[str, Any],
                  lr_at: Any) -> dict[str, float]:
    """Mean train metrics over the window; stop on a non-finite step if the config says so."""
    fetched = [(s, jax.device_get(m)) for s, m in window]
    window.clear()
    for s, m in fetched:
        bad = [name for q, name in (("loss", "loss"), ("grad", "gradient or updated parameters"))
               if float(np.asarray(m[f"nonfinite_{q}"])[0])]
        if bad and cfg.get("on_nonfinite", "stop") == "stop":
            raise NonFiniteError(f"step {s}: non-finite {' and '.join(bad)}; the update was not "
                                 "applied and no checkpoint holds it (set on_nonfinite=skip to "
                                 "skip such steps)")
    totals: dict[str, float] = {}
    for _, m in fetched:
        for k, v in m.items():
            if k.endswith(("_sum", "_count")):
                totals[k] = totals.get(k, 0.0) + float(np.asarray(v)[0])
    out = _sums_to_metrics(totals)
    norms = [float(np.asarray(m["grad_norm"])[0]) for _, m in fetched]
    out["grad_norm"] = float(np.mean(norms))
    out["grad_norm_max"] = float(np.max(norms))
    out["skipped"] = float(sum(max(float(np.asarray(m["nonfinite_loss"])[0]),
                                   float(np.asarray(m["nonfinite_grad"])[0])) for _, m in fetched))
    out["learning_rate"] = float(lr_at(fetched[-1][0] - 1))
    return out


def _baseline_text(data: DataSource) -> str:
    spec = data.spec
    if spec.baseline is None:
        return ""
    return f" (trivial baseline {spec.baseline_metric}={spec.baseline:.4g}: {spec.baseline_note})"


def _summary(workdir: str, cfg: Mapping[str, Any], data: DataSource, n_params: int, step: int,
             seconds: float, n_dev: int) -> dict[str, Any]:
    evals = read_metrics(workdir, "eval")
    spec = data.spec
    summary = {"model": cfg["model"]["name"], "data": cfg["data"]["name"], "params": n_params,
               "step": step, "train_seconds": round(seconds, 2), "devices": n_dev,
               "per_device_batch": cfg["batch_size"] // n_dev,
               "baseline": {"metric": spec.baseline_metric, "value": spec.baseline,
                            "note": spec.baseline_note},
               "eval": {k: v for k, v in (evals[-1] if evals else {}).items()
                        if k not in ("step", "split")}}
    _write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    return summary


def _summary_line(summary: Mapping[str, Any]) -> str:
    ev = ", ".join(f"{k}={v:.4g}" for k, v in summary["eval"].items()
                   if isinstance(v, int | float))
    base = summary["baseline"]
    base_text = "" if base["value"] is None else f" (baseline {base['metric']}={base['value']:.4g})"
    return (f"{summary['model']} on {summary['data']}: step {summary['step']}, "
            f"{summary['params']:,} params, eval {ev}{base_text}, "
            f"{summary['train_seconds']:.1f}s training")
