"""A sweep's record: its finished points without their checkpoints, in a folder of their own.

A finished point needs its checkpoints only until the sweep's after-point hooks (probes, Newton
solves) have cached their results in its folder. The rest (config.json, summary.json,
metrics.jsonl, the hooks' caches) is tens to hundreds of KB a point: small enough to keep under
version control, and enough to skip the point when the sweep runs again, in the same workdir or
a new one, and to write the sweep's report. A sweep that spans sessions on machines that may not
keep their disks keeps its record where it lasts (e.g. the repository): `run_sweep(...,
record=DIR)` copies each point there once it has finished and restores the record's points into
a workdir that lacks them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cnn_rnn.errors import ConfigError
from cnn_rnn.training.run_record import make_writable_folder

# What a finished point's record leaves out: the weights and the logs only a rerun would need.
LEFT_OUT = ("checkpoints", "tensorboard", ".lock", "*.lock", "*.tmp")
SUMMARY_FILE = "summary.json"  # a point's folder has it once the point has finished
CONFIG_FILE = "config.json"  # and this from its start: the config the sweep checks it against


def prepare(record: str) -> None:
    """Create the record folder; ConfigError naming `--record` if it cannot be written."""
    make_writable_folder(record, "--record")


def save_point(workdir: str, record: str, name: str) -> None:
    """Copy the finished point `name` from `workdir` into `record`, less LEFT_OUT.

    Copied whole into a temporary folder first, then renamed into place: a copy cut off half
    way must not leave a folder that has its summary (reads as finished) but not its caches.
    """
    final = os.path.join(record, name)
    tmp, old = (os.path.join(record, f".{name}.{uuid.uuid4().hex}.{k}.tmp") for k in "no")
    try:
        shutil.copytree(os.path.join(workdir, name), tmp,
                        ignore=shutil.ignore_patterns(*LEFT_OUT))
        if os.path.isdir(final):  # an earlier copy (the point was passed again): moved aside
            os.rename(final, old)
        os.rename(tmp, final)
    finally:
        for folder in (tmp, old):
            shutil.rmtree(folder, ignore_errors=True)


def restore(record: str, workdir: str, names: Sequence[str]) -> list[str]:
    """Copy into `workdir` each point of `names` that `record` holds and `workdir` has not finished.

    Returns the names restored. A point the workdir has finished itself is left as it is.
    """
    restored = []
    for name in names:
        src = os.path.join(record, name)
        if (all(os.path.isfile(os.path.join(src, f)) for f in (SUMMARY_FILE, CONFIG_FILE))
                and not os.path.isfile(os.path.join(workdir, name, SUMMARY_FILE))):
            dst = os.path.join(workdir, name)
            # The summary last: a copy cut off half way leaves the point unfinished, not a
            # finished point without its caches.
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=lambda folder, _, top=src: (
                [SUMMARY_FILE] if folder == top else []))
            shutil.copy2(os.path.join(src, SUMMARY_FILE), os.path.join(dst, SUMMARY_FILE))
            restored.append(name)
    return restored


def check_cache_usable(workdir: str, field: str, cached: Mapping[str, Any] | None,
                       settings: Any) -> None:
    """Raise ConfigError if a hook must recompute a point whose checkpoints are gone.

    A point restored from a record has its hooks' caches (probe.json, newton.json) but no
    checkpoints: with other settings (`field`, e.g. "--config.probe") the hook could not redo
    its work, and redoing part of it would overwrite the record's cache with less.
    """
    if (cached and cached.get("settings") != settings
            and not os.path.isdir(os.path.join(workdir, "checkpoints"))):
        raise ConfigError(field, f"point {os.path.basename(workdir)} was run with "
                          f"{cached.get('settings')} and has no checkpoints to redo it with "
                          f"{settings} (a sweep's record keeps none); accepted: the settings "
                          "it was run with, or a new record")
