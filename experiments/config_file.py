"""A config file and its `--config.<field>` overrides, checked before config_flags reads them.

config_flags reports a broken config file in whatever form the failure took: a traceback inside
a flag error, an error deferred until first use, a KeyError with a suggestion in its text. Loading
the file here first, and walking each override's path through the config it returns, turns every
such failure into a ConfigError naming the file or the field (config_flags then loads it again;
config files are cheap and deterministic).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from cnn_rnn.errors import ConfigError


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def load_module(path: str, flag: str = "--config") -> ModuleType:
    """Import the Python file `path` (no `:arg`) as a fresh module; ConfigError if it fails."""
    if not path:
        raise ConfigError(flag, "empty path; e.g. --config=configs/mnist1d_cnn.py")
    if os.path.isdir(path):
        raise ConfigError(flag, f"{path!r} is a directory, not a config file; e.g. "
                          f"{flag}=configs/mnist1d_cnn.py")
    if not os.path.isfile(path):
        raise ConfigError(flag, f"no such file {path!r}")
    if not path.endswith(".py"):
        raise ConfigError(flag, f"{path!r} is not a Python config file (.py)")
    name = "config_file_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(flag, f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - whatever the user's file raises at import
        raise ConfigError(flag, f"{path}: importing it raised {type(e).__name__}: "
                          f"{_first_line(e)}") from None
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    return module


def load_config(spec: str, flag: str = "--config") -> Any:
    """The config `get_config(arg)` returns for `path[:arg]`; ConfigError for any failure."""
    path, *arg = spec.split(":", 1)
    module = load_module(path, flag)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(flag, f"{path} defines no get_config(); a config file returns its "
                          "ml_collections.ConfigDict from get_config()")
    try:
        config = get_config(*arg)
    except Exception as e:  # noqa: BLE001 - whatever the user's get_config raises
        # A ValueError is the config's own message about its argument; others are bugs in it.
        what = "" if isinstance(e, ValueError) else f"get_config raised {type(e).__name__}: "
        raise ConfigError(flag, f"{spec}: {what}{_first_line(e)}") from None
    if not isinstance(config, Mapping) and not hasattr(config, "keys"):
        raise ConfigError(flag, f"{spec}: get_config() returned {type(config).__name__}, not a "
                          "ConfigDict")
    return config


def _keys(node: Any) -> list[str]:
    return sorted(node.keys()) if hasattr(node, "keys") else []


def check_override(config: Any, path: str, flag: str = "--config") -> None:
    """Raise ConfigError if the dotted field `path` does not exist in `config`.

    The error names the whole flag (`--config.model.hiden`) and the nearest field names.
    """
    node, done = config, []
    for part in path.split("."):
        key = part.split("[", 1)[0]  # config_flags accepts `field[0]` for a tuple element
        keys = _keys(node)
        if not keys and done:
            raise ConfigError(f"{flag}.{path}", f"{'.'.join(done)} is a value, not a section")
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=3)
            hint = (f"did you mean {' or '.join(near)}?" if near
                    else f"accepted: {', '.join(keys)}")
            raise ConfigError(f"{flag}.{path}", f"no such field; {hint}")
        node, done = node[key], [*done, key]


def precheck(argv: Sequence[str], flag_names: Sequence[str]) -> None:
    """Load each config flag's file and check its overrides in `argv`, as config_flags would.

    Raises ConfigError for the first problem: a file that does not load, an override of a field
    the config lacks, or an override without its config file.
    """
    for name in flag_names:
        spec, overrides = None, []
        args = list(argv[1:])
        for i, arg in enumerate(args):
            if arg == "--":
                break
            if arg.startswith(f"--{name}="):
                spec = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(args):
                spec = args[i + 1]
            for prefix in (f"--{name}.", f"--no{name}."):
                if arg.startswith(prefix):
                    overrides.append(arg[len(prefix):].split("=", 1)[0])
        if spec is None:
            if overrides:
                raise ConfigError(f"--{name}", f"required with --{name}.{overrides[0]}; "
                                  f"e.g. --{name}=configs/mnist1d_cnn.py")
            continue
        config = load_config(spec, f"--{name}")
        for path in overrides:
            check_override(config, path, f"--{name}")
