"""What `python -m experiments.run --list` prints, and the field table of docs/configs.md.

`--list`: each config file, its arguments, one line. The table: how many model and data fields
each config file lists (`--show_config`).
A config file's arguments are the typed defaults it passes to `configs.common.parse_arg`; they
are read by calling its `get_config()` once with that function wrapped, so the list can never
disagree with the code. A config file that cannot build without an argument says so with a
module constant `EXAMPLE` (e.g. `"path=my.npz"`), which the list shows and the table uses.

    python -m experiments.config_catalog     # print the table of docs/configs.md
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from cnn_rnn.errors import ConfigError
from experiments import config_file

# One command-line override per model family that trains, and the timeseries split: shown in
# docs/configs.md, each trained by tests/test_configs.py.
EXAMPLE_OVERRIDES = (
    ("recurrent", "configs/adding.py:model=gru,variant=cpu,T=12", "model.impl", "quasi_deer"),
    ("tcn", "configs/adding.py:model=tcn,variant=cpu,T=12", "model.channels", "(8,8)"),
    ("transformer", "configs/adding.py:model=transformer,variant=cpu,T=12", "model.positions",
     "learned"),
    ("linear_recurrence", "configs/adding.py:model=lru,variant=cpu,T=12", "model.r_min", "0.5"),
    ("cnn", "configs/mnist1d_cnn.py", "model.features", "(8,16)"),
    ("hybrid", "configs/mnist1d_hybrid.py", "model.cell", "lstm"),
    ("seq2seq", "configs/seq2seq.py:model=none,length=4,budget=2000", "model.attention", "dot"),
    ("timeseries data", "configs/forecast.py:model=gru", "data.split", "(0.6,0.2)"),
)


def _arguments(module: Any) -> dict[str, Any] | None:
    """The defaults `module.get_config()` hands to parse_arg (None if it takes no arguments).

    Read even when get_config() then fails for want of a required argument.
    """
    seen: dict[str, Any] = {}
    real = getattr(module, "parse_arg", None)
    if real is None:
        return None

    def recording(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
        seen.update(defaults)
        return real(arg, defaults)

    module.parse_arg = recording
    try:
        module.get_config(getattr(module, "EXAMPLE", None))
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
            continue  # a helper module (common.py, presets.py)
        try:
            args = _arguments(module)
        except Exception as e:  # noqa: BLE001 - a broken config must not break the listing
            blocks.append(f"{path}  {_summary(module)}\n    (get_config() fails: {e})")
            continue
        lines = [f"{path}  {_summary(module)}"]
        if args:
            lines.append("    arguments (defaults): "
                         + ", ".join(f"{k}={_shown(v)}" for k, v in args.items()))
        if getattr(module, "EXAMPLE", None):
            lines.append(f"    needs an argument, e.g. --config={path}:{module.EXAMPLE}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _shown(value: Any) -> str:
    """A default as it is written in a config argument (lists comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _config_files(directory: str) -> list[tuple[str, Any]]:
    """(path, module) of every config file in `directory` that defines get_config()."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
        module = config_file.load_module(path)
        if callable(getattr(module, "get_config", None)):
            out.append((path, module))
    return out


def fields_table(directory: str = "configs") -> str:
    """The markdown table of docs/configs.md: model and data fields `--show_config` lists."""
    rows = ["| config file | model | model fields | data | data fields |", "|---|---|---|---|---|"]
    for path, module in _config_files(directory):
        example = getattr(module, "EXAMPLE", None)
        config = module.get_config(example)
        shown = f"{path}:{example}" if example else path
        counts = [(config[s].name, len([k for k in config[s] if k != "name"]))
                  for s in ("model", "data")]
        rows.append(f"| `{shown}` | {counts[0][0]} | {counts[0][1]} | {counts[1][0]} | "
                    f"{counts[1][1]} |")
    return "\n".join(rows)


def _quoted(value: str) -> str:
    """`value` as typed in a shell (a tuple in quotes)."""
    return f"'{value}'" if value.startswith("(") else value


def overrides_table() -> str:
    """The markdown table of EXAMPLE_OVERRIDES, as commands."""
    rows = ["| family | command-line override |", "|---|---|"]
    rows += [f"| {family} | `--config={config} --config.{field}={_quoted(value)}` |"
             for family, config, field, value in EXAMPLE_OVERRIDES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(fields_table())
    print()
    print(overrides_table())
