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
from collections.abc import Sequence

# What a finished point's record leaves out: the weights and the logs only a rerun would need.
LEFT_OUT = ("checkpoints", "tensorboard", ".lock", "*.lock", "*.tmp")
SUMMARY_FILE = "summary.json"  # a point's folder has it once the point has finished


def save_point(workdir: str, record: str, name: str) -> None:
    """Copy the finished point `name` from `workdir` into `record`, less LEFT_OUT."""
    shutil.copytree(os.path.join(workdir, name), os.path.join(record, name),
                    ignore=shutil.ignore_patterns(*LEFT_OUT), dirs_exist_ok=True)


def restore(record: str, workdir: str, names: Sequence[str]) -> list[str]:
    """Copy into `workdir` each point of `names` that `record` holds and `workdir` has not finished.

    Returns the names restored. A point the workdir has finished itself is left as it is.
    """
    restored = []
    for name in names:
        src = os.path.join(record, name)
        if (os.path.isfile(os.path.join(src, SUMMARY_FILE))
                and not os.path.isfile(os.path.join(workdir, name, SUMMARY_FILE))):
            shutil.copytree(src, os.path.join(workdir, name), dirs_exist_ok=True)
            restored.append(name)
    return restored
