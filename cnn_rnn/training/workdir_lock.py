"""An exclusive lock on a workdir, so two runs never write the same checkpoints.

It is an `fcntl.flock` on `<workdir>/.lock`: the kernel releases it when the holding process
exits in any way, SIGKILL included, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from cnn_rnn.errors import ConfigError

LOCK_FILE = ".lock"


class WorkdirLock:
    """Context manager holding the workdir's lock; raises ConfigError if another run has it."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._file: IO[str] | None = None

    def __enter__(self) -> WorkdirLock:
        f = open(self.path, "a+")  # noqa: SIM115 - held for the lifetime of the run
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise ConfigError(
                "workdir", f"{os.path.dirname(self.path)!r} is in use by another run "
                f"(pid {holder}); wait for it to finish or use another --workdir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
