"""Your own arrays as a data source, with no code: `data.name="arrays"`, `data.path="my.npz"`.

The `.npz` follows the Keras convention: `x_train`, `y_train`, `x_test`, `y_test`.

  inputs   images [N, H, W] or [N, H, W, C], or sequences [N, T] or [N, T, D]; uint8 inputs are
           taken as bytes and scaled to [0, 1]; [N, H, W] is read as images when uint8 and as
           sequences [N, T, D] otherwise (override with `layout`). A channel axis of 1 is added
           where there is none.
  targets  integer labels [N] -> classification (classes = largest label + 1); floats [N] or
           [N, K] -> regression (override with `task`).

Inputs get the same normalisation (per-channel train mean/std) and pixel views (sequential /
permuted) as the tfds image sources: the code is shared (`images.normalized_source`). Every
problem with the file is a one-line ConfigError on `data.path` (or the override field).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from cnn_rnn.data.base import DataSource
from cnn_rnn.data.images import check_view_options, classification_spec, normalized_source
from cnn_rnn.data.registry import register_data
from cnn_rnn.data.sequential import check_choice
from cnn_rnn.errors import ConfigError
from cnn_rnn.task import TaskSpec

KEYS = ("x_train", "y_train", "x_test", "y_test")
TASKS = ("auto", "classification", "regression")
LAYOUTS = ("auto", "images", "sequences")
ACCEPTED = "an .npz with x_train, y_train, x_test, y_test (the Keras convention)"


def load_npz(path: Any) -> dict[str, np.ndarray]:
    """Return the four Keras-convention arrays of the `.npz` at `path`, or raise ConfigError."""
    if not isinstance(path, str) or not path:
        raise ConfigError("data.path", f"must be the path of {ACCEPTED}, got {path!r}")
    if not os.path.isfile(path):
        raise ConfigError("data.path", f"no such file {path!r}; accepted: {ACCEPTED}")
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle
        raise ConfigError("data.path", f"cannot read {path} as .npz (not a zip archive); "
                          f"accepted: {ACCEPTED}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise ConfigError("data.path", f"{path} has no {', '.join(missing)} (it holds "
                                  f"{', '.join(npz.files) or 'nothing'}); accepted: {ACCEPTED}")
            return {k: npz[k] for k in KEYS}
    except ValueError as e:  # object arrays need pickle, which could run code: refused
        if isinstance(e, ConfigError):
            raise
        raise ConfigError("data.path", f"{path}: {str(e).splitlines()[0]}; accepted: arrays "
                          "of numbers") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise ConfigError("data.path", f"cannot read {path} as .npz ({e}); accepted: "
                          f"{ACCEPTED}") from e


def check_inputs(d: dict[str, np.ndarray], path: str) -> None:
    """Raise ConfigError for inputs of the wrong dtype or shape, or holding NaN/inf."""
    for key in ("x_train", "x_test"):
        x = d[key]
        if x.dtype.kind not in "buif":
            raise ConfigError("data.path", f"{path}: {key} has dtype {x.dtype}; accepted: "
                              "numbers (uint8 bytes, integers or floats)")
        if not 2 <= x.ndim <= 4:
            raise ConfigError("data.path", f"{path}: {key} has shape {x.shape}; accepted: "
                              "[N, T], [N, T, D], [N, H, W] or [N, H, W, C]")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise ConfigError("data.path", f"{path}: {key} holds {(~np.isfinite(x)).sum()} "
                              f"NaN/inf values (first at index {tuple(int(i) for i in bad)}); "
                              "accepted: finite inputs")
    if d["x_train"].shape[1:] != d["x_test"].shape[1:]:
        raise ConfigError("data.path", f"{path}: x_train examples {d['x_train'].shape[1:]} and "
                          f"x_test examples {d['x_test'].shape[1:]} differ in shape")
    for split in ("train", "test"):
        nx, ny = len(d[f"x_{split}"]), len(d[f"y_{split}"])
        if nx != ny or nx == 0:
            raise ConfigError("data.path", f"{path}: x_{split} has {nx} examples and y_{split} "
                              f"{ny}; accepted: equal, non-zero lengths")


def with_channels(x: np.ndarray, layout: str) -> np.ndarray:
    """Return inputs as [N, *positions, C]: images [N, H, W, C] or sequences [N, T, D]."""
    if layout == "auto":
        layout = "images" if x.ndim == 4 or (x.ndim == 3 and x.dtype == np.uint8) else "sequences"
    wanted = {"images": (3, 4), "sequences": (2, 3)}[layout]
    if x.ndim not in wanted:
        raise ConfigError("data.layout", f"{layout!r} needs inputs with {wanted[0]} or "
                          f"{wanted[1]} axes, got shape {x.shape}; accepted: {', '.join(LAYOUTS)}")
    x = x if x.ndim == wanted[1] else x[..., None]
    return x if x.dtype == np.uint8 else x.astype(np.float32)


def targets_and_task(d: dict[str, np.ndarray], task: str,
                     path: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (train targets, test targets, task): int32 [N] labels or float32 [N, K] values."""
    ys = [d["y_train"], d["y_test"]]
    kinds = {y.dtype.kind for y in ys}
    if not kinds <= set("buif"):
        raise ConfigError("data.path", f"{path}: targets have dtype {ys[0].dtype}/{ys[1].dtype}; "
                          "accepted: integer labels or float values")
    if task == "auto":
        task = "regression" if "f" in kinds else "classification"
    if task == "classification":
        if "f" in kinds:
            raise ConfigError("data.task", f"classification needs integer labels, but {path} "
                              f"has float targets ({ys[0].dtype}); accepted: integer y_train/"
                              "y_test, or task='regression'")
        ys = [y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y for y in ys]
        if any(y.ndim != 1 for y in ys) or min(int(y.min()) for y in ys) < 0:
            raise ConfigError("data.path", f"{path}: classification labels must be integers "
                              f">= 0 of shape [N], got {ys[0].shape} / {ys[1].shape}")
        return ys[0].astype(np.int32), ys[1].astype(np.int32), task
    ys = [np.asarray(y, np.float32).reshape(len(y), -1) for y in ys]
    if ys[0].shape[1] != ys[1].shape[1] or not all(np.isfinite(y).all() for y in ys):
        raise ConfigError("data.path", f"{path}: regression targets must be finite, with the "
                          f"same width in train and test, got {ys[0].shape} / {ys[1].shape}")
    return ys[0], ys[1], task


@register_data("arrays")
def arrays(seed: int, path: str = "", task: str = "auto", layout: str = "auto",
           normalize: bool = True, pixels: str = "none", permutation_seed: int = 0) -> DataSource:
    """Build a source from your own `.npz` (x_train, y_train, x_test, y_test); see the module.

    Args:
      seed: training-order seed.
      path: the `.npz` file.
      task: "auto" (integer targets: classification, float: regression), "classification" or
        "regression".
      layout: "auto", "images" ([N, H, W(, C)]) or "sequences" ([N, T(, D)]).
      normalize: normalise inputs by the train split's per-channel mean/std (uint8 inputs are
        scaled to [0, 1] first either way).
      pixels: "none", "sequential" or "permuted": read each example position by position.
      permutation_seed: seed of the "permuted" order, independent of `seed`.
    """
    task = check_choice("task", task, TASKS)
    layout = check_choice("layout", layout, LAYOUTS)
    check_view_options(pixels, permutation_seed, normalize)
    d = load_npz(path)
    check_inputs(d, path)
    y_train, y_test, task = targets_and_task(d, task, path)
    x_train, x_test = with_channels(d["x_train"], layout), with_channels(d["x_test"], layout)
    if task == "classification":
        spec = classification_spec(int(max(y_train.max(), y_test.max())) + 1, x_train.shape[1:],
                                   y_train)
    else:
        mse = float(np.mean((y_test - y_train.mean(0)) ** 2))
        spec = TaskSpec(kind="regression", num_outputs=y_train.shape[1],
                        input_shape=x_train.shape[1:], baseline=mse, baseline_metric="loss",
                        baseline_note="MSE of predicting the train mean")
    return normalized_source(spec, {"inputs": x_train, "targets": y_train},
                             {"inputs": x_test, "targets": y_test}, seed, normalize, pixels,
                             permutation_seed)
