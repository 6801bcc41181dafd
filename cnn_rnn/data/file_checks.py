"""Checks every file loader makes before it reads, casts or allocates: one ConfigError each.

A file a user names may be missing, a folder, empty, or lie in its header (an `.npy` header
claiming terabytes in a file of a few bytes: numpy would try to allocate them first). Its values
may not survive the cast to what the model takes (labels beyond int32 wrap to another class,
float64 beyond float32 become inf). Each check here refuses such a file with one line naming the
field, the file and what is accepted; nothing is ever coerced.
"""

from __future__ import annotations

import os
import zipfile
from typing import IO

import numpy as np

from cnn_rnn.errors import ConfigError

INT32_MAX = np.iinfo(np.int32).max
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_file(field: str, path: str, accepted: str) -> None:
    """Raise ConfigError unless `path` is an existing, non-empty regular file.

    A folder is named as a folder (not "no such file"), an empty file as empty.
    """
    if os.path.isdir(path):
        raise ConfigError(field, f"{path!r} is a directory, not a file; accepted: {accepted}")
    if not os.path.isfile(path):
        raise ConfigError(field, f"no such file {path!r}; accepted: {accepted}")
    if os.path.getsize(path) == 0:
        raise ConfigError(field, f"{path!r} is empty (0 bytes); accepted: {accepted}")


Header = tuple[tuple[int, ...], np.dtype]


def _npy_payload(f: IO[bytes], available: int, where: str, field: str) -> Header:
    """Shape and dtype of the `.npy` stream `f` (`available` bytes long).

    A header that claims more bytes than the stream holds is refused before numpy allocates them.
    """
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f, max_header_size=10_000)
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(field, f"{where}: not a valid .npy array ({str(e).splitlines()[0]}); "
                          "accepted: arrays saved with numpy.save/savez") from None
    if dtype.hasobject:
        raise ConfigError(field, f"{where}: holds Python objects ({dtype}); accepted: arrays "
                          "of numbers")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = available - f.tell()
    if need > have:
        raise ConfigError(field, f"{where}: its header claims shape {tuple(shape)} of {dtype} "
                          f"({_bytes(need)}) but the file holds {_bytes(max(have, 0))}; the file "
                          "is truncated or corrupt; accepted: an intact numpy file")
    return tuple(shape), dtype


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_npy_sizes(path: str, field: str) -> Header:
    """(shape, dtype) of the `.npy` file at `path` after checking its header against its size."""
    with open(path, "rb") as f:
        return _npy_payload(f, os.path.getsize(path), path, field)


def check_npz_sizes(path: str, field: str) -> dict[str, Header]:
    """{name: (shape, dtype)} of every array of the `.npz` at `path`.

    Each header is checked against the member's real (uncompressed) size before any is loaded.
    """
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            with z.open(info) as f:
                out[name] = _npy_payload(f, info.file_size, f"{path}: {name}", field)
    return out


def check_axes(field: str, where: str, shape: tuple[int, ...], axes: str) -> None:
    """Refuse an array with an empty axis (zero examples, steps, features or columns)."""
    for i, (n, name) in enumerate(zip(shape, axes.split(","), strict=False)):
        if n == 0:
            raise ConfigError(field, f"{where} has shape {tuple(shape)}: zero {name.strip()} "
                              f"(axis {i}); accepted: at least one along every axis")


def int32_labels(y: np.ndarray, field: str, where: str) -> np.ndarray:
    """`y` as int32 class labels; negative labels or labels beyond int32 are refused.

    Checked before the cast: a cast first would wrap 2**32 to 0, another class.
    """
    if y.dtype.kind not in "biu":
        raise ConfigError(field, f"{where}: labels have dtype {y.dtype}; accepted: integers")
    if y.size and (int(y.min()) < 0 or int(y.max()) > INT32_MAX):
        bad = int(y.max()) if int(y.max()) > INT32_MAX else int(y.min())
        raise ConfigError(field, f"{where}: label {bad:,} is out of range; accepted: class "
                          f"labels 0..{INT32_MAX:,} (int32)")
    return y.astype(np.int32)


def float32_values(x: np.ndarray, field: str, where: str) -> np.ndarray:
    """`x` as float32; non-finite values and values beyond float32 (they would be inf): refused."""
    if x.dtype.kind not in "biuf":
        raise ConfigError(field, f"{where}: dtype {x.dtype}; accepted: numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ConfigError(field, f"{where} holds {int((~np.isfinite(x)).sum())} NaN/inf values "
                          f"(first at index {tuple(int(i) for i in bad)}); accepted: finite "
                          "values")
    if x.size and (x.dtype.itemsize > 4 or x.dtype.kind in "iu"):
        big = float(np.abs(x).max())
        if big > FLOAT32_MAX:
            raise ConfigError(field, f"{where} holds {big:.3g}, beyond float32 (max "
                              f"{FLOAT32_MAX:.3g}); accepted: values float32 can hold")
    return x.astype(np.float32)
