"""The training loop: `train_and_evaluate(config, workdir)`, independent of any model or data.

Order of work, so that bad input never leaves anything behind: validate the config, build data
and model (unknown names and kwargs fail here), check the batch splits over the devices, and only
then create the workdir, write the resolved config, and restore the newest checkpoint, if any.
Run bookkeeping (identity, time, summary) lives in run_record; the train-metrics window in
train_window.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import optax

from cnn_rnn.data.base import DataSource
from cnn_rnn.data.pipeline import Prefetcher, default_eval_batch_size, prefetch_batches
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError, NonFiniteError
from cnn_rnn.models.registry import build_model
from cnn_rnn.training import distributed, parallel
from cnn_rnn.training import run_record as record
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.config import RunConfig, complete, to_dict
from cnn_rnn.training.interrupts import stop_requests
from cnn_rnn.training.metrics import MetricWriter, NullWriter, read_metrics
from cnn_rnn.training.optim import build_optimizer, learning_rate_schedule
from cnn_rnn.training.progress import progress_bar
from cnn_rnn.training.run_record import (  # re-exported: sweeps apply the same rules
    check_same_run,
    prepare_workdir,
    run_identity,
)
from cnn_rnn.training.state import (
    TrainState,
    check_fits_in_memory,
    create_train_state,
    param_count,
)
from cnn_rnn.training.steps import eval_step, train_step
from cnn_rnn.training.stopping import StopRule, check_applies, stop_reason, stop_rule
from cnn_rnn.training.train_window import TrainWindow, sums_to_metrics
from cnn_rnn.training.workdir_lock import WorkdirLock

__all__ = ["NonFiniteError", "build_run", "check_same_run", "evaluate", "init_errors_as_config",
           "prepare_workdir", "run_identity", "to_dict", "train_and_evaluate"]

log = logging.getLogger(__name__)
# Durations only (never stored as a time of day); a module attribute so tests can replace it.
_clock = time.monotonic


def evaluate(p_eval: Any, state: Any, data: DataSource, batch_size: int,
             backend: parallel.Backend) -> dict[str, float]:
    """Metrics of the replicated `state` over the whole fixed eval set.

    `batch_size` is the evaluation batch (see `eval_batch_size`); the next batch is prepared on
    a background thread while the device evaluates the current one. Each process evaluates its
    rows of every batch; the step's sums are global.
    """
    total: dict[str, float] = {}
    with Prefetcher(distributed.local_rows, data.eval_batches(batch_size)) as batches:
        for batch in batches:
            out = backend.fetch(p_eval(state, batch))
            for k, v in out.items():
                total[k] = total.get(k, 0.0) + float(v)
    return sums_to_metrics(total)


def eval_batch_size(cfg: RunConfig, data: DataSource, n_dev: int) -> int:
    """The config's `eval_batch_size`, or (0 or absent) a default larger than the training batch."""
    size = cfg["eval_batch_size"]
    if size == 0:
        return default_eval_batch_size(cfg["batch_size"], data.spec.input_shape, n_dev)
    parallel.check_batch_size(size, n_dev, field="eval_batch_size")
    return size


def build_run(cfg: RunConfig, data: DataSource | None = None
              ) -> tuple[DataSource, Any, optax.GradientTransformation]:
    """Check the batch split and build the data source (unless given), model and optimizer.

    `cfg` is a completed config (`training.config.complete`); ConfigError for a value that does
    not build.
    """
    n_dev = jax.device_count()
    parallel.check_batch_size(cfg["batch_size"], n_dev)
    data = build_data(cfg["data"], seed=cfg["seed"]) if data is None else data
    eval_batch_size(cfg, data, n_dev)  # a bad value fails before any write
    if data.num_train is not None and cfg["batch_size"] > data.num_train:
        raise ConfigError("batch_size", f"{cfg['batch_size']} is more than the {data.num_train} "
                          f"training examples of {cfg['data']['name']!r} (a batch would repeat "
                          f"examples); accepted: <= {data.num_train}")
    model = build_model(cfg["model"], data.spec, axis_name=parallel.AXIS)
    return data, model, build_optimizer(cfg["optimizer"], cfg["steps"])


@contextlib.contextmanager
def init_errors_as_config(cfg: Mapping[str, Any], input_shape: tuple[int, ...]) -> Iterator[None]:
    """Turn an error raised while initialising the model into a one-line ConfigError.

    E.g. a sequence longer than a Transformer's max_len, or a width too large to index: a config
    problem, found before anything is written.
    """
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise ConfigError("model", f"{cfg['model']['name']!r} cannot take inputs of shape "
                          f"{input_shape}: {str(e).splitlines()[0]}") from e


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Train the configured model on the configured data, evaluating and checkpointing.

    Resumes from the newest checkpoint in `<workdir>/checkpoints` if there is one; a run already
    at `config.steps` only reports. Returns the summary also written to `<workdir>/summary.json`.
    """
    record.check_workdir_entries(workdir)  # before the slow part: the data and the model
    cfg = complete(config)
    finished = record.finished_summary(workdir, cfg)
    if finished is not None:  # nothing to build: say what it was
        log.info("already finished: %s", record.summary_line(finished))
        return finished
    data, model, tx = build_run(cfg)
    check_applies(stop_rule(cfg), data.spec.baseline, data.spec.baseline_metric)
    key = jax.random.PRNGKey(cfg["seed"])
    with init_errors_as_config(cfg, data.spec.input_shape):
        check_fits_in_memory(model, tx, data.spec.input_shape, key, cfg["model"]["name"])
        state = create_train_state(model, tx, data.spec.input_shape, key)
    if distributed.is_primary():  # the others write nothing but checkpoints (with it)
        prepare_workdir(workdir)
    with distributed.primary_holds(WorkdirLock(workdir), workdir):
        return _train_locked(cfg, workdir, data, model, state)


def _train_locked(cfg: RunConfig, workdir: str, data: DataSource, model: Any,
                  state: TrainState) -> dict[str, Any]:
    """The part of train_and_evaluate that writes to the workdir (its lock held)."""
    n_dev, n_params, steps = jax.device_count(), param_count(state.params), cfg["steps"]
    primary = distributed.is_primary()
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), cfg["keep_checkpoints"])
    with contextlib.closing(ckpt):
        restored = ckpt.restore_latest(state, check_meta=lambda m: check_same_run(m, cfg))
        start, seconds_before, meta, reason = 0, 0.0, {}, None
        rule = stop_rule(cfg)
        if restored is not None:
            state, meta = restored
            start = int(state.step)
            if start > steps:
                raise ConfigError("steps", f"{steps} is below the step of this workdir's newest "
                                  f"checkpoint ({start}); a run cannot be shortened after the "
                                  f"fact; accepted: >= {start}, or a new --workdir")
            # A run the rule stopped earlier (same records, same answer) only reports again.
            reason = stop_reason(rule, _evals_until(workdir, start), data.spec.baseline)
            seconds_before = record.previous_seconds(workdir, meta, start,
                                                     start >= steps or reason is not None)
            log.info("resuming from checkpoint at step %d of %d", start, steps)
            if start < steps and not reason:
                record.warn_if_schedule_stretched(meta, cfg, start)
        if primary:
            record.write_json_atomic(os.path.join(workdir, "config.json"), cfg)
        log.info("model %s: %s parameters; data %s %s; %d device(s) in %d process(es) (%s), "
                 "%d examples per device", cfg["model"]["name"], f"{n_params:,}",
                 cfg["data"]["name"], data.spec.input_shape, n_dev, distributed.process_count(),
                 cfg["parallelism"], cfg["batch_size"] // n_dev)
        if record.baseline_text(data):  # said once here, not on every eval line
            log.info("%s", record.baseline_text(data))
        t0 = _clock()

        def seconds() -> float:  # training seconds of every session so far
            return seconds_before + _clock() - t0

        end = start if reason else steps
        if start < end:
            end, reason = _train(cfg, workdir, data, model, state, start, meta.get("window", []),
                                 ckpt, seconds, rule)
        total = seconds() if start < end else seconds_before
    stopped = ({"stopped": {"reason": reason, "step": end, "rule": rule.describe()}}
               if reason else {})
    summary = record.write_summary(workdir, cfg, data, n_params, max(start, end), total,
                                   n_dev, write=primary, extra=stopped)
    log.info("%s: %s", "finished" if start < end else "already finished",
             record.summary_line(summary))
    return summary


def _evals_until(workdir: str, step: int) -> list[dict[str, Any]]:
    """The eval records up to `step` (a resumed run has not yet truncated later ones)."""
    return [e for e in read_metrics(workdir, "eval") if e.get("step", 0) <= step] if step else []


def _train(cfg: RunConfig, workdir: str, data: DataSource, model: Any, state: TrainState,
           start: int, pending: list[Any], ckpt: Checkpointer,
           seconds: Callable[[], float], rule: StopRule) -> tuple[int, str | None]:
    """Steps `start`..`steps`: train, log the window, evaluate and checkpoint on their cadences.

    Returns the last step and why it stopped before `steps` (the StopRule's reason) or None.
    """
    primary, steps = distributed.is_primary(), cfg["steps"]
    progress = cfg["progress"] and primary
    backend = parallel.make_backend(cfg["parallelism"])
    p_train = backend.compile(train_step, donate_state=True, model=model, spec=data.spec)
    p_eval = backend.compile(eval_step, model=model, spec=data.spec)
    window = TrainWindow(learning_rate_schedule(cfg["optimizer"], steps),
                         stop_on_nonfinite=cfg["on_nonfinite"] == "stop",
                         fetch=backend.fetch)
    window.restore(pending)
    state = backend.put_state(state)
    bar = progress_bar(steps, start, enabled=progress)
    eval_size = eval_batch_size(cfg, data, backend.n_devices)
    # Batch s is a pure function of (seed, s): preparing it ahead changes nothing but the wait.
    # Each process builds only its rows of the global batch, tagged with their global indices.
    rows = distributed.row_range(cfg["batch_size"])
    batches = prefetch_batches(data, cfg["batch_size"], range(start, steps),
                               lambda b: distributed.with_example_ids(b, rows[0]),
                               rows=rows if distributed.process_count() > 1 else None)
    writer = MetricWriter(workdir, resume_step=start) if primary else NullWriter()
    evals, reason, done = _evals_until(workdir, start), None, start
    with contextlib.closing(writer), bar, batches, stop_requests() as stop:
        for step, batch in zip(range(start, steps), batches, strict=True):
            state, metrics = p_train(state, batch)
            done = step + 1
            window.add(done, metrics)
            bar.update(1)
            last = done == steps
            if done % cfg["log_every"] == 0 or last:
                train = window.flush()
                writer.write(done, "train", train)
                bar.set_postfix(loss=f"{train['loss']:.4g}", refresh=False)
            if done % cfg["eval_every"] == 0 or last:
                ev = evaluate(p_eval, state, data, eval_size, backend)
                writer.write(done, "eval", ev)
                line = f"step {done}: eval " + ", ".join(f"{k}={v:.4g}" for k, v in ev.items())
                if progress:
                    bar.write(line)
                elif primary:
                    log.info(line)
                evals.append({"step": done, **ev})
                reason = stop_reason(rule, evals, data.spec.baseline)
                if reason and primary:
                    log.info("step %d: stopping early (%s: %s)", done, reason,
                             rule.describe(data.spec.baseline))
            # Asked once per step (every process, every step: with several, a SIGTERM on any
            # one stops all at one step), so the save and the stop see the same answer.
            stopping = stop.at(done)
            if done % cfg["checkpoint_every"] == 0 or last or stopping or reason:
                # The seconds so far and an open metrics window travel with the checkpoint.
                ckpt.save(done, backend.get_state(state),
                          record.checkpoint_meta(cfg, seconds(), window.pending()))
            if stopping and not last:
                raise stop.error(done)
            if reason:
                break
    log.debug("input wait %.2fs over steps %d..%d", batches.wait_seconds, start, done)
    return done, reason
