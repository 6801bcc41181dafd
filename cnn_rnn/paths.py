"""The one path abstraction for every file a run reads or writes: local folders and buckets.

Paths stay strings (`gs://bucket/run`, `/tmp/run`); every read, write, listing and existence test
goes through `etils.epath`, the layer Orbax itself uses, so a workdir on a bucket (`gs://`, `s3://`,
`az://`) gets its config, metrics, TensorBoard events, lock, checkpoints and summary there, not in
a local folder named `gs:`. What object stores lack is handled here once: no rename of a whole
file over another (a single object is replaced whole instead, which is atomic there), no append
(the caller rewrites the object), no advisory locks (see workdir_lock).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import uuid
from typing import Any

from etils import epath

from cnn_rnn.errors import ConfigError

OBJECT_STORES = ("gs://", "s3://", "az://", "hf://")
# What a gs:// workdir needs beyond our dependencies: epath reads and writes through gcsfs, and
# Orbax asks google-cloud-storage about the bucket's layout.
CLIENTS = {"gs://": ("gcsfs", "google.cloud.storage")}


def is_object_store(path: str) -> bool:
    """Whether `path` names an object store (a bucket) rather than a local file system."""
    return str(path).startswith(OBJECT_STORES)


def as_path(path: str) -> epath.Path:
    """`path` as an epath.Path (a bucket URI stays a URI)."""
    return epath.Path(path)


def join(base: str, *names: str) -> str:
    """`base/names...` as a string, for local paths and bucket URIs alike."""
    return os.fspath(as_path(base).joinpath(*names)) if is_object_store(base) else os.path.join(
        base, *names)


def absolute(path: str) -> str:
    """`path` made absolute (a bucket URI is already)."""
    return path if is_object_store(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    """Whether a file or folder `path` exists."""
    return as_path(path).exists()


def isdir(path: str) -> bool:
    """Whether `path` is a folder (on a bucket: a prefix with objects under it)."""
    return as_path(path).is_dir()


def isfile(path: str) -> bool:
    """Whether `path` exists and is not a folder."""
    p = as_path(path)
    return p.exists() and not p.is_dir()


def makedirs(path: str) -> None:
    """Create the folder `path` and its parents (a no-op on most buckets)."""
    as_path(path).mkdir(parents=True, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names in the folder `path` (empty if it does not exist)."""
    p = as_path(path)
    return sorted(c.name for c in p.iterdir()) if p.exists() else []


def files_under(folder: str) -> list[str]:
    """Paths relative to `folder` of every file below it, sorted."""
    if not is_object_store(folder):
        return sorted(os.path.relpath(os.path.join(root, name), folder)
                      for root, _, names in os.walk(folder) for name in names)
    out = []  # listings only: object stores differ in what their glob returns
    for name in listdir(folder):
        path = join(folder, name)
        out += [f"{name}/{rel}" for rel in files_under(path)] if isdir(path) else [name]
    return sorted(out)


def read_bytes(path: str) -> bytes:
    """The bytes of the file `path`."""
    return as_path(path).read_bytes()


def read_text(path: str) -> str:
    """The text of the file `path`."""
    return as_path(path).read_text()


def write_text_atomic(path: str, text: str) -> None:
    """Write `text` to `path` so that a crash leaves the old file or the new one, never half.

    Locally through a temporary file renamed over it (a name of its own, so that two processes
    writing the same file, e.g. a sweep run as two at once, never share one); on a bucket one
    object upload, which the store makes visible whole or not at all.
    """
    if is_object_store(path):
        as_path(path).write_text(text)
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def remove_tree(path: str) -> None:
    """Remove the folder `path` and everything under it, if it exists."""
    p = as_path(path)
    if p.exists():
        p.rmtree()


def move(src: str, dst: str) -> None:
    """Move a file or folder (on a bucket: copy, then delete)."""
    as_path(src).rename(dst)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package missing
        return False


def _pip_name(module: str) -> str:
    return module.replace(".", "-")


def check_reachable(workdir: str) -> None:
    """Raise ConfigError ("workdir") unless a bucket workdir can be reached, before any write.

    A local workdir is checked by prepare_workdir. For a bucket: the store's client must be
    installed and the bucket answer (offline, no credentials or no such bucket: one line).
    """
    if not is_object_store(workdir):
        return
    for prefix, modules in CLIENTS.items():
        missing = [m for m in modules if workdir.startswith(prefix) and not _importable(m)]
        if missing:
            pip = " ".join(_pip_name(m) for m in missing)
            raise ConfigError("workdir", f"{workdir}: a {prefix} workdir needs "
                              f"{' and '.join(missing)}, not installed; accepted: a local "
                              f"directory, or pip install {pip}")
    try:
        as_path(workdir).exists()
    except Exception as e:  # noqa: BLE001 - any client, network or credential failure
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError("workdir", f"cannot reach {workdir}: {type(e).__name__}: "
                          f"{reason[:160]}; accepted: a local directory, or a bucket this "
                          "machine can reach (gs:// needs gcsfs and credentials)") from None
