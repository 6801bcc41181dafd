"""Shared command-line plumbing: flag parsing and user errors as one line, never a traceback."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags
from absl import logging as absl_logging

from cnn_rnn.errors import ConfigError


def fail(message: str, code: int = 2) -> None:
    """Print `error: message` as one line on stderr and exit with `code`."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e)
        if "Traceback" in message:
            # config_flags embeds the config file's traceback; keep the flag and the final cause.
            head = message.split(":", 1)[0]
            tail = [ln.strip() for ln in message.splitlines() if ln.strip()][-1]
            message = f"{head}: {tail}"
        fail(message)
    except (AttributeError, KeyError) as e:
        # Raised by config_flags for an override of a field the (locked) config lacks.
        key = str(e).strip("'\"")
        overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
        named = next((o for o in overrides if o.endswith("." + key) or o == f"--config.{key}"),
                     f"--config.{key}")
        fail(f"{named}: no such field in the config (a locked config accepts only the fields "
             "its get_config() defines)")
    except (ValueError, TypeError) as e:
        fail(f"{type(e).__name__}: {e}")
    raise AssertionError("unreachable")


def load_config(holder: Any) -> Any:
    """The config behind a `config_flags` holder, or exit with one line if it failed to load.

    config_flags defers a failed load (missing file, error inside get_config) until first use;
    this forces it and reports the innermost cause.
    """
    try:
        config = holder.value
        config.keys()
        return config
    except Exception as e:  # noqa: BLE001 - any failure inside the user's config file
        cause: BaseException = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
        fail(f"--config: cannot load the config: {lines[-1] if lines else type(cause).__name__}")


def config_and_workdir(argv: list[str], config: Any, workdir: Any,
                       example: str) -> tuple[Any, str]:
    """The loaded config and the workdir of a `--config ... --workdir ...` entry point.

    Exits with one line for stray arguments, a missing flag or a config that fails to load.

    Args:
      argv: what absl left after parsing the flags (the program name first).
      config: the `config_flags.DEFINE_config_file` holder.
      workdir: the `--workdir` flag holder.
      example: a config file to suggest when --config is missing.
    """
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --config=..., --workdir=..., "
             "--config.<field>=value")
    if config.value is None:
        fail(f"--config: required; e.g. --config={example}")
    if not workdir.value:
        fail(f"--workdir: required ({flags.FLAGS[workdir.name].help.rstrip('.')})")
    return load_config(config), workdir.value


def load_points_module(path: str, kind: str) -> Any:
    """Import a sweep/ablation config file (path without any `:arg`) to call its get_points."""
    path = path.split(":", 1)[0]
    spec = importlib.util.spec_from_file_location("points_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "get_points"):
        fail(f"--config: {path} defines no get_points(config); it is not {kind} config")
    return module


def run_main(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(main)` with one-line errors for bad flags, ConfigError and divergence.

    Bad flags and ConfigError exit 2; a run that diverged (the loop's NonFiniteError) exits 3.
    """

    def wrapped(argv: list[str]) -> Any:
        # Our own INFO lines; libraries (Orbax logs every file it writes) only from WARNING.
        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger("cnn_rnn").setLevel(logging.INFO)
        logging.getLogger("experiments").setLevel(logging.INFO)
        try:
            return main(argv)
        except ConfigError as e:
            fail(str(e))
        except RuntimeError as e:
            # NonFiniteError is defined with the training loop, which imports JAX; if it was
            # raised, that module is loaded, so look it up there rather than import it early.
            loop = sys.modules.get("cnn_rnn.training.loop")
            if loop is not None and isinstance(e, loop.NonFiniteError):
                fail(str(e), code=3)
            raise

    app.run(wrapped, flags_parser=_parse_flags)
