"""Run a list of experiment points, each in its own workdir, resumably.

A sweep is a list of `Point`s (a name, a complete experiment config, and tags such as model,
length or seed that identify it in tables). `run_sweep` validates every point before running any,
refuses a point whose folder holds a run of a different config (only the training loop's
MAY_CHANGE fields may differ), skips points already finished, resumes an interrupted point from
its checkpoint, logs progress (point i of n, ETA), and rewrites `<workdir>/results.json` after
each point, so an interrupted sweep loses at most the unfinished part of one point. Several
processes may share a local workdir, each running its own points (e.g. one per CPU core, with a
config field that selects the points); the results file keeps every process's rows. A bucket
workdir has no lock: one process per workdir there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_rnn import paths, sweep_record
from cnn_rnn.data.base import DataSource
from cnn_rnn.data.registry import DATA, data_names
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import MODELS, model_names
from cnn_rnn.training.config import complete, to_dict
from cnn_rnn.training.loop import (  # a sweep applies the loop's rules
    NonFiniteError,
    build_run,
    check_same_run,
    init_errors_as_config,
    prepare_workdir,
    run_identity,
    train_and_evaluate,
)
from cnn_rnn.training.stopping import stop_rule

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclasses.dataclass
class Point:
    """One run of a sweep: a unique name (its folder), its config, and its table tags."""

    name: str
    config: Any
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)


PointHook = Callable[[Point, str, dict[str, Any]], dict[str, Any] | None]


def grid_points(make: Callable[..., tuple[str, Any, dict[str, Any]]], *, every: int,
                log_every: int, **axes: Iterable[Any]) -> list[Point]:
    """One Point per combination of `axes` (keyword name: values; the first varies slowest).

    `make(**combination)` returns the point's (name, config, tags); each config then evaluates
    and checkpoints every `every` steps, logs every `log_every` and shows no progress bar.
    """
    points = []
    for values in itertools.product(*axes.values()):
        name, cfg, tags = make(**dict(zip(axes, values, strict=True)))
        cfg.progress = False
        cfg.eval_every = cfg.checkpoint_every = every
        cfg.log_every = log_every
        points.append(Point(name, cfg, tags))
    return points


def validate_points(points: Sequence[Point], *,
                    build: bool = False) -> list[tuple[int, ...]]:
    """Raise ConfigError for the first bad point, before anything runs; else its input shapes.

    Checks unique names, every point's standard fields (`training.config.complete`, as
    `experiments.run` does) and its model/data argument names. With `build=True` (what
    `run_sweep` does) it also checks every value as `train_and_evaluate` would before writing
    anything: the batch splits over the devices, the data source and model build, and the model
    initialises on the data's input shape (traced with `jax.eval_shape`: nothing is compiled or
    allocated). Each distinct data config is built once. Returns each point's input shape
    (one example's, as the model sees it) with `build=True`, else nothing.
    """
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError("sweep", f"point name {dup!r} is used twice; names must be unique")
    model_names(), data_names()  # import every family so the registries are complete
    # Cheap checks of every point first, so a typo in the last point does not wait for builds.
    for p in points:
        with _naming(p):
            cfg = complete(p.config)
            for registry, section in ((MODELS, "model"), (DATA, "data")):
                kwargs = {k: v for k, v in cfg[section].items() if k != "name"}
                registry.check_kwargs(cfg[section]["name"], kwargs)
    if not build:
        return []
    sources: dict[str, DataSource] = {}
    shapes = []
    for p in points:
        with _naming(p):
            shapes.append(_check_builds(complete(p.config), sources))
    return shapes


@contextlib.contextmanager
def _naming(point: Point) -> Iterator[None]:
    """Re-raise a ConfigError or NonFiniteError with the point's name in front."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"point {point.name}: {e.field}", str(e).split(": ", 1)[1]) from e
    except NonFiniteError as e:
        raise NonFiniteError(f"point {point.name}: {e}") from e


def _check_builds(cfg: dict[str, Any], sources: dict[str, DataSource]) -> tuple[int, ...]:
    """Build what train_and_evaluate builds before its workdir, init traced, no state made."""
    key = json.dumps(cfg["data"], sort_keys=True)
    # Only the spec is read here, which does not depend on the seed; loading data can be slow.
    data, model, _ = build_run(cfg, sources.get(key))
    sources[key] = data
    rng = jax.random.PRNGKey(0)
    with init_errors_as_config(cfg, data.spec.input_shape):
        jax.eval_shape(functools.partial(model.init, train=False),
                       {"params": rng, "dropout": rng},
                       jax.ShapeDtypeStruct((1, *data.spec.input_shape), jnp.float32))
    return tuple(data.spec.input_shape)


def check_unchanged(point: Point, workdir: str, *, record: bool = False) -> None:
    """Raise ConfigError if `workdir` (or, with `record`, a record) holds `point` run otherwise.

    The same rule as resuming from a checkpoint (only the loop's MAY_CHANGE fields may differ),
    applied to the config.json of the point's earlier run: a finished point is skipped without
    reaching the checkpoint check, so its stale results would be reported as this config's.
    """
    path = paths.join(workdir, "config.json")
    if not paths.exists(path):
        return
    saved = json.loads(paths.read_text(path))
    wording = (dict(field=f"--record {workdir}", held="a run of another config",
                    remedy="another --record") if record else {})
    with _naming(point):
        check_same_run({"config": run_identity(saved)}, complete(point.config), **wording)


def finished_summary(workdir: str, steps: int, rule: str | None = None) -> dict[str, Any] | None:
    """The point's summary if it already ran to `steps` or its stop rule `rule` ended it."""
    path = paths.join(workdir, "summary.json")
    if not paths.exists(path):
        return None
    summary = json.loads(paths.read_text(path))
    stopped = summary.get("stopped") or {}
    done = summary.get("step", 0) >= steps or (rule is not None and stopped.get("rule") == rule)
    return summary if done else None


def _saved_rows(workdir: str) -> dict[str, dict[str, Any]]:
    """The rows of `workdir`'s results file by point name (none if it has none yet)."""
    path = paths.join(workdir, RESULTS_FILE)
    if not paths.exists(path):
        return {}
    return {row["name"]: row for row in json.loads(paths.read_text(path))}


@contextlib.contextmanager
def _results_lock(workdir: str) -> Iterator[None]:
    """Exclusive use of `workdir`'s results file while it is read and rewritten.

    Several processes may run points of one sweep in one workdir (each its own points, e.g. one
    per CPU core); a bucket workdir has a single writer and no lock.
    """
    if paths.is_object_store(workdir):
        yield
        return
    import fcntl  # POSIX; the sweep's local workdirs

    with open(os.path.join(workdir, RESULTS_FILE + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_results(workdir: str, rows: dict[str, dict[str, Any]],
                   points: Sequence[Point], *, keep_order: bool = False) -> None:
    """Rewrite the results file: `rows` (by point name) over the rows it already holds.

    A row this process has not (re)written stays as the file has it: a point this sweep has not
    reached yet (finished in an earlier session), or one another process is running in the same
    workdir. The points' rows come in sweep order, any others after them; with `keep_order`
    (a record, kept under version control) the file's rows keep their places and new ones
    follow, whichever process writes.
    """
    with _results_lock(workdir):
        saved = _saved_rows(workdir)
        merged = {**saved, **rows}
        order = list(saved) if keep_order else []
        order += [p.name for p in points if p.name in merged and p.name not in order]
        listed = set(order)
        order += [name for name in merged if name not in listed]
        paths.write_text_atomic(paths.join(workdir, RESULTS_FILE),
                                json.dumps([merged[name] for name in order], indent=1,
                                           sort_keys=True, default=str))


def _finished_summary(point: Point, folder: str) -> dict[str, Any] | None:
    """`finished_summary` of `point` in `folder`, under its own budget and stop rule."""
    return finished_summary(folder, int(point.config.steps),
                            stop_rule(to_dict(point.config)).describe())


def restore_record(points: Sequence[Point], record: str, workdir: str) -> list[str]:
    """Copy into `workdir` the points `record` holds finished; return their names.

    Finished under the points' current budget and stop rule: a point whose `steps` grew since
    is not restored, and runs.
    """
    finished = [p.name for p in points
                if _finished_summary(p, paths.join(record, p.name)) is not None]
    restored = sweep_record.restore(record, workdir, finished)
    if restored:
        log.info("restored %d finished point(s) from the record %s", len(restored), record)
    return restored


def finished_rows(workdir: str, points: Sequence[Point],
                  flag: str = "--workdir") -> list[dict[str, Any]]:
    """The rows `run_sweep` wrote for the points finished so far, in the sweep's order.

    Raises ConfigError (naming `flag`, the option that named the folder) when the workdir (or
    record) holds none, or holds a point run with another config.
    """
    by_name = _saved_rows(workdir)
    done = [p for p in points if p.name in by_name]
    if not done:
        raise ConfigError(flag, f"no point of this sweep has finished in {workdir} "
                          f"({RESULTS_FILE}): run the sweep first")
    for point in done:
        check_unchanged(point, paths.join(workdir, point.name))
    return [by_name[p.name] for p in done]


def point_cost(config: Any, input_shape: Sequence[int]) -> float:
    """A point's work relative to the others', for the ETA: steps x positions per example.

    The positions are the input's time steps (or pixels), all of `input_shape` but its channels:
    a sweep along T expects its T = 1000 points to take 10x its T = 100 ones, and a sequential
    MNIST row (784 steps) far more than either's mean. Steps are the point's budget, also for
    points that stopped early, so that the remaining ones are expected to stop alike.
    """
    return float(config.steps) * float(math.prod(input_shape[:-1]))


def run_sweep(points: Sequence[Point], workdir: str, *, after_point: PointHook | None = None,
              record: str | None = None) -> list[dict[str, Any]]:
    """Run (or skip, if finished) every point; return one result row per point.

    Args:
      points: the sweep.
      workdir: each point runs in `<workdir>/<point.name>`.
      after_point: optional `(point, point_workdir, row) -> extra fields`, called for every
        point (finished before or not) and merged into its row; used by ablations to probe the
        saved checkpoints. It should cache its own work in the point's folder.
      record: optional folder that keeps every finished point without its checkpoints, with
        a results file of its own (`cnn_rnn.sweep_record`): its points are first restored into
        `workdir` where it lacks them (then skipped as finished), and each point is copied
        there, its row merged into the record's results, once its row is written.
    """
    shapes = validate_points(points, build=True)
    for point in points:
        check_unchanged(point, paths.join(workdir, point.name))
        if record is not None:
            check_unchanged(point, paths.join(record, point.name), record=True)
    if record is not None:
        sweep_record.prepare(record)
    prepare_workdir(workdir)
    if record is not None:
        restore_record(points, record, workdir)
    rows: list[dict[str, Any]] = []
    costs = [point_cost(p.config, shape) for p, shape in zip(points, shapes, strict=True)]
    ran_seconds = 0.0
    for i, point in enumerate(points):
        pdir = paths.join(workdir, point.name)
        summary = _finished_summary(point, pdir)
        eta = (f", ETA {ran_seconds / sum(costs[:i]) * sum(costs[i:]) / 60:.1f} min"
               if i else "")
        t0 = time.time()
        if summary is not None:
            log.info("point %d/%d %s: finished earlier, skipped", i + 1, len(points), point.name)
        else:
            log.info("point %d/%d %s: running%s", i + 1, len(points), point.name, eta)
            with _naming(point):
                summary = train_and_evaluate(point.config, pdir)
        trained = time.time()
        row = {"name": point.name, **point.tags, **summary, "tag_keys": list(point.tags)}
        if after_point is not None:
            row.update(after_point(point, pdir, row) or {})
        # A point's cost for the ETA: all of its training, also what an earlier session did (a
        # point finished then, or resumed now and near its end, took far longer than this
        # session saw), and its hook's work (probing can be half of a point).
        ran_seconds += (float(summary.get("train_seconds") or (trained - t0))
                        + time.time() - trained)
        rows.append(row)
        _write_results(workdir, {r["name"]: r for r in rows}, points)
        if record is not None:
            sweep_record.save_point(workdir, record, point.name)
            _write_results(record, {r["name"]: r for r in rows}, points, keep_order=True)
    return rows


def write_page(path: str, lines: Sequence[str]) -> None:
    """Write a generated markdown page (its folder created) and say where it went."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\
".join(lines))
    print(f"report: {path}")
