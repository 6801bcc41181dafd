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
from collections.abc import Sequence

# What a finished point's record leaves out: the weights and the logs only a rerun would need.
LEFT_OUT = ("checkpoints", "tensorboard", ".lock", "*.lock", "*.tmp")
SUMMARY_FILE = "summary.json"  # a point's folder has it once the point has finished


def save_point(workdir: str, record: str, name: str) -> None:
    """Copy the finished point `name` from `workdir` into `record`, less LEFT_OUT.

    Copied whole into a temporary folder first, then renamed into place: a copy cut off half
    way must not leave a folder that has its summary (reads as finished) but not its caches.
    """
    final = os.path.join(record, name)
    tmp = os.path.join(record, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copytree(os.path.join(workdir, name), tmp,
                        ignore=shutil.ignore_patterns(*LEFT_OUT))
        if os.path.isdir(final):  # an earlier copy (the point was passed again): replaced
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def restore(record: str, workdir: str, names: Sequence[str]) -> list[str]:
    """Copy into `workdir` each point of `names` that `record` holds and `workdir` has not finished.

    Returns the names restored. A point the workdir has finished itself is left as it is.
    """
    restored = []
    for name in names:
        src = os.path.join(record, name)
        if (os.path.isfile(os.path.join(src, SUMMARY_FILE))
                and not os.path.isfile(os.path.join(workdir, name, SUMMARY_FILE))):
            dst = os.path.join(workdir, name)
            # The summary last: a copy cut off half way leaves the point unfinished, not a
            # finished point without its caches.
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=lambda folder, _, top=src: (
                [SUMMARY_FILE] if folder == top else []))
            shutil.copy2(os.path.join(src, SUMMARY_FILE), os.path.join(dst, SUMMARY_FILE))
            restored.append(name)
    return restored
