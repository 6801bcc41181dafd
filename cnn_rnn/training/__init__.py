"""Training: train state, steps, data parallelism, the loop, checkpoints; and `load_run`.

`load_run` (see `reopen.py`) is imported on first use, so that importing a submodule such as
`cnn_rnn.training.host_devices` stays free of JAX.
"""

from typing import Any

__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    if name in ("load_run", "Run", "RunReader"):
        from cnn_rnn.training import reopen

        return getattr(reopen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
