"""Checksums that catch a checkpoint corrupted on disk after it was written (bit rot, bad copies).

Orbax 0.12 verifies none of it: the zarr3 format checksums only its shard index, and a
same-size overwrite inside an array's data file restores without complaint (checked). So each
checkpoint carries, in its JSON record, a SHA-256 of its arrays (`state_digest`) and one of the
record itself (`seal`); and after Orbax has committed the checkpoint, a manifest with a SHA-256 of
every file in its folder (`write_manifest`), which also covers Orbax's own metadata files. The
manifest is written after the commit, so a crash in between leaves a checkpoint without one: it
is still checked through its record and arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from cnn_rnn import paths

MANIFEST = "checksums.json"
_SEAL = "record_sha256"


class ChecksumError(ValueError):
    """A checkpoint's files, record or arrays do not match the checksums written with it."""


def state_digest(state: Any) -> str:
    """SHA-256 of every leaf of `state` (path, dtype, shape and bytes), in tree order."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        if a.size == 1 and a.dtype.kind in "iu":
            # The step counter: a Python int in a fresh TrainState, which Orbax restores as an
            # int64 array of shape (1,); hash its value, whatever the container.
            a = a.reshape(()).astype(np.int64)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` plus a SHA-256 of its own JSON, so that a flip inside a value is caught."""
    out = {k: v for k, v in record.items() if k != _SEAL}
    return {**out, _SEAL: _json_digest(out)}


def check_seal(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without its seal; ChecksumError if it does not match (unsealed: as is)."""
    if _SEAL not in record:
        return dict(record)
    out = {k: v for k, v in record.items() if k != _SEAL}
    if record[_SEAL] != _json_digest(out):
        raise ChecksumError("its record fails its checksum")
    return out


def _file_digests(folder: str) -> dict[str, str]:
    return {rel: hashlib.sha256(paths.read_bytes(paths.join(folder, rel))).hexdigest()
            for rel in paths.files_under(folder) if rel not in (MANIFEST, MANIFEST + ".tmp")}


def write_manifest(folder: str) -> None:
    """Write `<folder>/checksums.json`: the SHA-256 of every file in the committed checkpoint."""
    files = _file_digests(folder)
    text = json.dumps(seal({"files": files}), sort_keys=True)
    if paths.is_object_store(folder):  # one object upload: whole or absent
        paths.write_text_atomic(paths.join(folder, MANIFEST), text)
        return
    tmp = os.path.join(folder, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST))


def check_manifest(folder: str) -> None:
    """ChecksumError naming the first file that differs from the manifest (none: nothing to do)."""
    path = paths.join(folder, MANIFEST)
    if not paths.exists(path):
        return
    try:
        manifest = check_seal(json.loads(paths.read_text(path)))
        wanted = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise ChecksumError("its checksum manifest is unreadable") from e
    found = _file_digests(folder)
    for rel, digest in wanted.items():
        if found.get(rel) != digest:
            what = "is missing" if rel not in found else "fails its checksum"
            short = rel if len(rel) <= 24 else "..." + rel[-18:]  # data files have hash names
            raise ChecksumError(f"{short} {what}")
