"""Output files written whole or not at all.

Every file goes to a temporary name first and is
renamed into place only when all of them are complete; a path that cannot be written is a
one-line ConfigError on the flag that named it, before any work.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator

from cnn_rnn.errors import ConfigError


def check_writable(path: str, field: str = "output") -> str:
    """The absolute `path` after checking that its folder can take a new file (ConfigError)."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ConfigError(field, f"{path} is a folder; accepted: a file path")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ConfigError(field, f"cannot write to {folder} ({e.strerror or e}); accepted: a "
                          "path in a writable folder") from None
    return path


@contextlib.contextmanager
def all_or_nothing(field: str = "output") -> Iterator[Callable[[str], str]]:
    """Yield `temp(path)`: where to write `path`; on success every file is renamed into place.

    On any exception the temporary files are removed and nothing appears at the final paths.
    """
    pending: dict[str, str] = {}

    def temp(path: str) -> str:
        path = check_writable(path, field)
        base, ext = os.path.splitext(path)
        pending[path] = f"{base}.partial-{os.getpid()}{ext}"
        return pending[path]

    try:
        yield temp
    except BaseException:
        for tmp in pending.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
        raise
    for final, tmp in pending.items():
        os.replace(tmp, final)
