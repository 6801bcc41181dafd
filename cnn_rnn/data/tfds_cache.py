"""A decoded tfds split, cached once beside the dataset as memory-mapped `.npy` arrays.

Decoding a split (one PNG per MNIST example) costs tens of seconds; the decoded arrays are small
(MNIST train is 47 MB as uint8). The first run decodes in batched reads and writes

    <cache root>/<split>[-<key>]/{meta.json, <array>.npy}

where the root defaults to `<data_dir>/<name>/<version>/cnn_rnn_cache`. Later runs map the
arrays from disk in well under a second. A cache is used only if its meta matches the dataset
(name and version), the split, the source's `key` (e.g. a truncation length) and the number of
examples; anything else, including a folder left by an interrupted write, is rebuilt. Writes go
to a temporary folder renamed into place, so a reader never sees a half-written cache. A
read-only or remote (gs://...) data_dir only costs the speed-up: the decoded arrays are then
kept in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
CHUNK = 2048  # examples per batched read
Arrays = dict[str, np.ndarray]
Convert = Callable[[Sequence[dict[str, Any]]], Arrays]


def default_cache_root(ds: Any) -> str:
    """Return `<data_dir>/<name>/<version>/cnn_rnn_cache` for a tfds data source."""
    return os.path.join(os.fspath(ds.dataset_info.data_dir), "cnn_rnn_cache")


def split_folder(root: str, split: str, key: str) -> str:
    """Return the cache folder of `split` (any tfds slicing) and `key` under `root`."""
    label = f"{split}-{key}" if key else split
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)[:60]
    return os.path.join(root, f"{readable}-{hashlib.sha1(label.encode()).hexdigest()[:8]}")


def read_examples(ds: Any, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Return the decoded examples at `indices`, read in one batched call where possible."""
    try:
        return list(ds.__getitems__(list(indices)))
    except TypeError:  # tfds.testing.mock_data binds __getitems__ without `self`
        return [ds[i] for i in indices]


def decode_split(ds: Any, convert: Convert, chunk: int = CHUNK) -> Arrays:
    """Return `convert` applied to all of `ds` in chunks of batched reads, concatenated."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(ds), chunk):
        arrays = convert(read_examples(ds, range(start, min(start + chunk, len(ds)))))
        for name, value in arrays.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


def expected_meta(ds: Any, split: str, key: str) -> dict[str, Any]:
    """Return what a valid cache of `ds` records about where its arrays came from."""
    info = ds.dataset_info
    return {"format": FORMAT, "dataset": str(info.full_name), "version": str(info.version),
            "split": split, "key": key, "num_examples": len(ds)}


def load_cache(folder: str, expected: dict[str, Any]) -> Arrays | None:
    """Return the memory-mapped arrays in `folder` if its meta matches `expected`, else None."""
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        if {k: meta.get(k) for k in expected} != expected:
            return None
        arrays = {name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r")
                  for name in meta["arrays"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    shapes = {name: [list(a.shape), str(a.dtype)] for name, a in arrays.items()}
    return arrays if shapes == meta["arrays"] else None


def write_cache(folder: str, arrays: Arrays, meta: dict[str, Any]) -> None:
    """Write `arrays` and their meta to `folder` atomically (temporary folder, then rename)."""
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = f"{folder}.tmp.{uuid.uuid4().hex}"
    os.makedirs(tmp)
    try:
        for name, value in arrays.items():
            np.save(os.path.join(tmp, f"{name}.npy"), value)
        record = {**meta, "arrays": {n: [list(a.shape), str(a.dtype)] for n, a in arrays.items()}}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(record, f, indent=2)
        shutil.rmtree(folder, ignore_errors=True)  # an invalid or partial cache
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only if the rename failed


def cached_split(ds: Any, split: str, convert: Convert, key: str = "",
                 cache_dir: str | None = None, use_cache: bool = True) -> Arrays:
    """Return the decoded arrays of tfds data source `ds`, from the cache or decoded and cached.

    Args:
      ds: a `tfds.data_source` of `split`.
      split: the split string that opened `ds` (part of the cache's identity).
      convert: turns a list of decoded examples into a dict of arrays with a leading example axis.
      key: what else the arrays depend on (e.g. "max_len=512"); part of the cache's identity.
      cache_dir: cache root (None: `default_cache_root(ds)`).
      use_cache: False reads and decodes without touching any cache.
    """
    root = cache_dir or default_cache_root(ds)
    if not use_cache or "://" in root:  # gs:// etc.: numpy cannot map it (and os would mkdir it)
        return decode_split(ds, convert)
    folder = split_folder(root, split, key)
    expected = expected_meta(ds, split, key)
    arrays = load_cache(folder, expected)
    if arrays is not None:
        return arrays
    arrays = decode_split(ds, convert)
    try:
        write_cache(folder, arrays, expected)
    except OSError as e:
        log.warning("cannot cache decoded %s %s in %s (%s); decoding again next run",
                    expected["dataset"], split, folder, e.strerror or e)
        return arrays
    return load_cache(folder, expected) or arrays
