"""Run a list of experiment points, each in its own workdir, resumably.

A sweep is a list of `Point`s (a name, a complete experiment config, and tags such as model,
length or seed that identify it in tables). `run_sweep` validates every point before running any,
skips points already finished, resumes an interrupted point from its checkpoint, logs progress
(point i of n, ETA), and rewrites `<workdir>/results.json` after each point, so an interrupted
sweep loses at most the unfinished part of one point.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from cnn_rnn.data.registry import DATA, data_names
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import MODELS, model_names
from cnn_rnn.training.loop import to_dict, train_and_evaluate
from cnn_rnn.training.validation import validate_config

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclasses.dataclass
class Point:
    """One run of a sweep: a unique name (its folder), its config, and its table tags."""

    name: str
    config: Any
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)


PointHook = Callable[[Point, str, dict[str, Any]], dict[str, Any] | None]


def validate_points(points: Sequence[Point]) -> None:
    """Raise ConfigError for the first bad point, before anything runs."""
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError("sweep", f"point name {dup!r} is used twice; names must be unique")
    model_names(), data_names()  # import every family so the registries are complete
    for p in points:
        cfg = to_dict(p.config)
        try:
            validate_config(cfg)
            for registry, section in ((MODELS, "model"), (DATA, "data")):
                kwargs = {k: v for k, v in cfg[section].items() if k != "name"}
                registry.check_kwargs(cfg[section]["name"], kwargs)
        except ConfigError as e:
            raise ConfigError(f"point {p.name}: {e.field}", str(e).split(": ", 1)[1]) from e


def finished_summary(workdir: str, steps: int) -> dict[str, Any] | None:
    """The point's summary if it already ran to `steps`, else None."""
    path = os.path.join(workdir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary.get("step", 0) >= steps else None


def _write_results(workdir: str, rows: list[dict[str, Any]]) -> None:
    path = os.path.join(workdir, RESULTS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rows, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def run_sweep(points: Sequence[Point], workdir: str, *,
              after_point: PointHook | None = None) -> list[dict[str, Any]]:
    """Run (or skip, if finished) every point; return one result row per point.

    Args:
      points: the sweep.
      workdir: each point runs in `<workdir>/<point.name>`.
      after_point: optional `(point, point_workdir, row) -> extra fields`, called for every
        point (finished before or not) and merged into its row; used by ablations to probe the
        saved checkpoints. It should cache its own work in the point's folder.
    """
    validate_points(points)
    os.makedirs(workdir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    ran_seconds: list[float] = []
    for i, point in enumerate(points):
        pdir = os.path.join(workdir, point.name)
        summary = finished_summary(pdir, int(point.config.steps))
        todo = len(points) - i
        eta = (f", ETA {sum(ran_seconds) / len(ran_seconds) * todo / 60:.1f} min"
               if ran_seconds else "")
        t0 = time.time()
        if summary is not None:
            log.info("point %d/%d %s: finished earlier, skipped", i + 1, len(points), point.name)
        else:
            log.info("point %d/%d %s: running%s", i + 1, len(points), point.name, eta)
            summary = train_and_evaluate(point.config, pdir)
        row = {"name": point.name, **point.tags, **summary, "tag_keys": list(point.tags)}
        if after_point is not None:
            row.update(after_point(point, pdir, row) or {})
        if not ran_seconds or summary.get("train_seconds"):
            # The ETA counts the hook's work too (probing can be half of a point).
            ran_seconds.append(time.time() - t0)
        rows.append(row)
        _write_results(workdir, rows)
    return rows


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A markdown table of `rows` with (header, key) columns; dotted keys reach into dicts."""

    def cell(row: dict[str, Any], key: str) -> str:
        value: Any = row
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, int):
            return f"{value:,}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, k) for _, k in columns) + " |" for r in rows]
    return "\n".join(lines)
