"""What `python -m experiments.run --list` prints: each config file, its arguments, one line.

A config file's arguments are the typed defaults it passes to `configs.common.parse_arg`; they
are read by calling its `get_config()` once with that function wrapped, so the list can never
disagree with the code.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from cnn_rnn.errors import ConfigError
from experiments import config_file


def _arguments(module: Any) -> dict[str, Any] | None:
    """The defaults `module.get_config()` hands to parse_arg (None if it takes no arguments)."""
    seen: dict[str, Any] = {}
    real = getattr(module, "parse_arg", None)
    if real is None:
        return None

    def recording(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
        seen.update(defaults)
        return real(arg, defaults)

    module.parse_arg = recording
    try:
        module.get_config()
    finally:
        module.parse_arg = real
    return seen


def _summary(module: Any) -> str:
    doc = " ".join((module.__doc__ or "").split())
    # The first sentence; "et al." and "e.g." do not end one.
    first = re.split(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.\s", doc, maxsplit=1)[0].rstrip(".")
    return first or "(no description)"


def describe(directory: str = "configs") -> str:
    """One block per config file in `directory`: path and description, then its arguments."""
    blocks = [f"Config files in {directory}/ (pick arguments with --config=FILE:key=value,...; "
              "see every field with --config=FILE --show_config):"]
    for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
        try:
            module = config_file.load_module(path)
        except ConfigError as e:
            blocks.append(f"{path}\n    (cannot be loaded: {e})")
            continue
        if not callable(getattr(module, "get_config", None)):
            continue  # a helper module (common.py, presets.py, bai2018.py)
        try:
            args = _arguments(module)
        except Exception as e:  # noqa: BLE001 - a broken config must not break the listing
            blocks.append(f"{path}  {_summary(module)}\n    (get_config() fails: {e})")
            continue
        lines = [f"{path}  {_summary(module)}"]
        if args:
            lines.append("    arguments (defaults): "
                         + ", ".join(f"{k}={v}" for k, v in args.items()))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
