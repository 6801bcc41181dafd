"""Which entry point a config file is for, so that each refuses another's config in one line.

A run config, a sweep, an ablation, a benchmark grid and a parallel-in-time grid are all
`get_config()` files; given to the wrong entry point, each used to fail somewhere inside it (a
KeyError, an AttributeError). Every entry point names the kind it takes; `check_kind` recognises
the file's kind from the fields its config has (and whether it defines `get_points`) and refuses
a mismatch naming the right command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cnn_rnn.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    """One kind of config: the fields that identify it, and the entry point and folder for it."""

    name: str
    fields: tuple[str, ...]
    points: bool  # whether the file defines get_points(config)
    command: str
    example: str


KINDS = (
    Kind("an ablation", ("probe",), True, "experiments.ablate",
         "configs/ablations/vanishing_gradients.py"),
    Kind("a sweep", (), True, "experiments.sweep", "configs/sweeps/results_cpu.py"),
    Kind("a run", ("model", "data", "steps", "optimizer"), False, "experiments.run",
         "configs/mnist1d_cnn.py"),
    Kind("a benchmark", ("models", "seq_lens", "batches", "hiddens"), False,
         "experiments.benchmark", "configs/benchmarks/recurrent_cpu.py"),
    Kind("a parallel-in-time", ("methods", "stages", "tol"), False, "experiments.parallel_in_time",
         "configs/ablations/parallel_in_time.py"),
)
BY_COMMAND = {k.command: k for k in KINDS}


def kind_of(config: Any, has_points: bool) -> Kind | None:
    """The first kind whose fields `config` has (and whose get_points matches), else None."""
    keys = set(config.keys()) if isinstance(config, Mapping) or hasattr(config, "keys") else set()
    for kind in KINDS:
        if kind.points == has_points and set(kind.fields) <= keys:
            return kind
    return None


def check_kind(config: Any, module: Any, spec: str, command: str) -> None:
    """Raise ConfigError on `--config` unless the config `spec` is the kind `command` takes.

    Args:
      config: the loaded config.
      module: the config file's module (for `get_points`).
      spec: the `--config` value, for the message.
      command: the entry point, e.g. "experiments.benchmark".
    """
    wanted = BY_COMMAND[command]
    found = kind_of(config, callable(getattr(module, "get_points", None)))
    if found is wanted:
        return
    if found is None:
        need = (" defining get_points(config)" if wanted.points else "") + (
            f" with the fields {', '.join(wanted.fields)}" if wanted.fields else "")
        raise ConfigError("--config", f"{spec} is not {wanted.name} config; {command} takes a "
                          f"config{need}; e.g. --config={wanted.example}")
    raise ConfigError("--config", f"{spec} is {found.name} config, not {wanted.name} config; run "
                      f"it with python -m {found.command}; {command} takes e.g. "
                      f"--config={wanted.example}")
