"""What every teaching notebook (notebooks/*.py) sets up first: how big to run, where to write."""

from __future__ import annotations

import os
import tempfile

import jax

from cnn_rnn.errors import ConfigError

SIZES = ("small", "full")


def notebook_settings(name: str) -> tuple[str, str]:
    """SIZE and WORKDIR of notebook `name`.

    SIZE is "full" on a TPU or GPU and "small" on a CPU (about a minute on two cores), unless the
    environment variable CNN_RNN_NOTEBOOK_SIZE forces one. Runs are written under a fresh temporary
    folder unless CNN_RNN_NOTEBOOK_WORKDIR names one (a finished run found there is reported, not
    retrained).
    """
    size = os.environ.get("CNN_RNN_NOTEBOOK_SIZE") or (
        "small" if jax.default_backend() == "cpu" else "full")
    if size not in SIZES:
        raise ConfigError("CNN_RNN_NOTEBOOK_SIZE",
                          f"unknown {size!r}; accepted: {', '.join(SIZES)}")
    workdir = os.environ.get("CNN_RNN_NOTEBOOK_WORKDIR") or tempfile.mkdtemp(
        prefix=f"cnn_rnn_{name}_")
    os.makedirs(workdir, exist_ok=True)
    return size, workdir
