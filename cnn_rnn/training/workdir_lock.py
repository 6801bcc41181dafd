"""An exclusive lock on a workdir, so two runs never write the same checkpoints.

It is an `fcntl.flock` on `<workdir>/.lock`: the kernel releases it when the holding process
exits in any way, SIGKILL included, so a killed run never leaves it stuck.

On an object store (a `gs://` workdir) there is no lock to take: the lock is then a best effort.
The run writes `.lock` with its host and pid and deletes it when it ends; a run that finds a
`.lock` naming another holder refuses the workdir. Two runs starting within the same moment can
both miss each other's object, and a run killed with SIGKILL (or a lost machine) leaves its
`.lock` behind: delete it by hand once no run uses the workdir.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import IO

from cnn_rnn import paths
from cnn_rnn.errors import ConfigError

LOCK_FILE = ".lock"


class WorkdirLock:
    """Context manager holding the workdir's lock; raises ConfigError if another run has it."""

    def __init__(self, workdir: str):
        self.path = paths.join(workdir, LOCK_FILE)
        self._file: IO[str] | None = None
        self._bucket = paths.is_object_store(workdir)
        self._owned = False  # a bucket's lock object was written by this run

    def __enter__(self) -> WorkdirLock:
        if self._bucket:
            return self._enter_bucket()
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

    def _enter_bucket(self) -> WorkdirLock:
        me = f"{socket.gethostname()}:{os.getpid()}"
        if paths.exists(self.path):
            holder = paths.read_text(self.path).strip() or "unknown"
            raise ConfigError(
                "workdir", f"{os.path.dirname(self.path)!r} has a lock object {LOCK_FILE} of "
                f"another run ({holder}); on a bucket the lock is a best effort: if no run uses "
                "this workdir (a killed run leaves it), delete the object, or use another "
                "--workdir")
        paths.write_text_atomic(self.path, me)
        self._owned = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            as_path = paths.as_path(self.path)
            if as_path.exists():
                as_path.unlink()
            self._owned = False
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
