"""Shared command-line plumbing: flag parsing and user errors as one line, never a traceback."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from ml_collections.config_flags.config_flags import is_config_flag

from cnn_rnn import paths
from cnn_rnn.errors import ConfigError, NonFiniteError
from cnn_rnn.training import distributed, interrupts
from cnn_rnn.training.host_devices import patient_host_devices
from cnn_rnn.training.interrupts import Interrupted
from experiments import config_file, config_kind

# What a run stopped by SIGTERM exits with (128 + 15), after saving a checkpoint.
PREEMPTED_EXIT = 143


def _line(text: str) -> None:
    sys.stderr.write(" ".join(str(text).split()) + "\n")
    sys.stderr.flush()


def command_line(module: str) -> str:
    """The command that is running, as a generated document names it (`python -m module ...`)."""
    return " ".join([f"python -m {module}", *sys.argv[1:]])


def fail(message: str, code: int = 2) -> None:
    """Print `error: message` as one line on stderr and exit with `code`."""
    _line(f"error: {message}")
    sys.exit(code)


def _config_flag_names() -> list[str]:
    return [name for name, fl in flags.FLAGS._flags().items() if is_config_flag(fl)]


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        # Config files and their overrides first, so that a broken file or a misspelt field
        # is a ConfigError here rather than whatever form config_flags gives it.
        config_file.precheck(argv, _config_flag_names())
        return flags.FLAGS(argv)
    except ConfigError as e:
        fail(str(e))
    except flags.Error as e:  # absl's own one-line messages (unknown flag, bad value)
        fail(str(e))
    raise AssertionError("unreachable")


def load_config(holder: Any) -> Any:
    """The config behind a `config_flags` holder, or exit with one line if it failed to load.

    `_parse_flags` has already loaded the file once; this reports what would still go wrong
    (config_flags defers a failed load until first use).
    """
    try:
        config = holder.value
        config.keys()
        return config
    except Exception as e:  # noqa: BLE001 - any failure inside the user's config file
        fail(f"--config: cannot load the config: {type(e).__name__}: {e}")


def config_and_workdir(argv: list[str], config: Any, workdir: Any,
                       command: str) -> tuple[Any, str]:
    """The loaded config and the workdir of a `--config ... --workdir ...` entry point.

    Exits with one line for stray arguments, a missing flag, a config that fails to load, or a
    config of another entry point's kind (a sweep given to the benchmark, ...).

    Args:
      argv: what absl left after parsing the flags (the program name first).
      config: the `config_flags.DEFINE_config_file` holder.
      workdir: the `--workdir` flag holder.
      command: the entry point, e.g. "experiments.run" (one of config_kind.BY_COMMAND).
    """
    example = config_kind.BY_COMMAND[command].example
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --config=..., --workdir=..., "
             "--config.<field>=value")
    if config.value is None:
        fail(f"--config: required; e.g. --config={example}")
    require(workdir)
    if command != "experiments.run":  # the run's every file goes through cnn_rnn.paths
        local_workdir(workdir.value, command)
    loaded = load_config(config)
    path = flags.FLAGS[config.name].config_filename
    config_kind.check_kind(loaded, config_file.load_module(path.split(":", 1)[0]), path, command)
    return loaded, workdir.value


def require(*holders: flags.FlagHolder) -> None:
    """Exit with one line for the first of these flags left unset, with what it is for."""
    for holder in holders:
        if not holder.value:
            fail(f"--{holder.name}: required ({flags.FLAGS[holder.name].help.rstrip('.')})")


def local_workdir(path: str, command: str, flag: str = "--workdir") -> None:
    """Exit with one line if `path` is a bucket: `command` reads and writes local files only.

    `experiments.run` takes a bucket workdir (every file through cnn_rnn.paths); the sweeps,
    reports and tools around it write with the local file system, which would create a folder
    named `gs:` here instead.
    """
    if paths.is_object_store(path):
        fail(f"{flag}: {path} is a bucket, and {command} reads and writes a local folder "
             "only; accepted: a local directory (experiments.run takes a bucket workdir; "
             "docs/reliability_inputs.md)")


def load_points_module(path: str, kind: str) -> Any:
    """Import a sweep/ablation config file (path without any `:arg`) to call its get_points."""
    module = config_file.load_module(path.split(":", 1)[0])
    if not hasattr(module, "get_points"):
        fail(f"--config: {path} defines no get_points(config); it is not {kind} config")
    return module


def define_report_only(what: str) -> flags.FlagHolder:
    """The `--report_only` flag of a resumable many-point command (`what`: "sweep", "ablation")."""
    return flags.DEFINE_bool(
        "report_only", False, "Train nothing: write the report of the points finished so far "
        f"(WORKDIR/results.json), e.g. while a long {what} is paused between sessions.")


def define_record() -> flags.FlagHolder:
    """The `--record` flag of a resumable many-point command (cnn_rnn.sweep_record)."""
    return flags.DEFINE_string(
        "record", None, "Optional folder that keeps every finished point without its "
        "checkpoints, and the results: restored into --workdir where it lacks them (a run "
        "continues in a new workdir); with --report_only the report is written from it. Small "
        "enough to keep under version control.")


def record_folder(record: flags.FlagHolder, workdir: str, command: str) -> str | None:
    """The `--record` folder, or None; exits with one line if it is a bucket or the workdir."""
    if not record.value:
        return None
    local_workdir(record.value, command, "--record")
    a, b = (os.path.realpath(p) for p in (record.value, workdir))
    if a == b or os.path.commonpath([a, b]) in (a, b):
        fail(f"--record: {record.value} is the --workdir or a folder in it or around it; "
             "accepted: a local folder apart from it")
    return record.value


def points_rows(points: list[Any], workdir: str, *, report_only: bool,
                after_point: Callable[..., dict[str, Any]] | None = None,
                record: str | None = None) -> list[dict[str, Any]]:
    """The rows a many-point report is written from.

    Every point trained (finished ones skipped, interrupted ones resumed) then `after_point`
    run on it; with `report_only`, nothing trained and only the points finished so far (those
    of `record` where one is given). `record`: see cnn_rnn.sweep_record.
    """
    from cnn_rnn.sweep import finished_rows, restore_record, run_sweep  # late: no JAX for flags

    if report_only:
        if not record:
            return finished_rows(workdir, points)
        rows = finished_rows(record, points, "--record")
        paths.makedirs(workdir)  # the report's folder, which need not hold the run:
        restore_record(points, record, workdir)  # some reports read the points' folders
        return rows
    return run_sweep(points, workdir, after_point=after_point, record=record)


class _Plain(logging.Formatter):
    """A line as it was logged; a warning or an error says so in front."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def _quiet_logging() -> None:
    """Our own INFO lines, plain; libraries (Orbax logs every file it writes) from WARNING.

    absl's `--verbosity` (`-v`) asks for the rest: `-v 0` every library's INFO lines, `-v 1`
    also our DEBUG lines (e.g. the input pipeline's wait), all with absl's prefix (level, time,
    process, file:line).
    """
    if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    absl_logging.get_absl_handler().setFormatter(_Plain())
    logging.getLogger("cnn_rnn").setLevel(logging.INFO)
    logging.getLogger("experiments").setLevel(logging.INFO)


def _report_errors(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Run `main(argv)`; a user error, divergence, interrupt or full disk becomes one line."""
    _quiet_logging()
    try:
        return main(argv)
    except ConfigError as e:
        fail(str(e))
    except NonFiniteError as e:
        fail(str(e), code=3)
    except Interrupted as e:
        interrupts.exit_interrupted(e)
    except KeyboardInterrupt:  # Ctrl-C without the watcher (run in-process): nothing to save
        interrupts.exit_interrupted(Interrupted(signal.SIGINT))
    except distributed.Preempted as e:
        _line(str(e))
        sys.exit(PREEMPTED_EXIT)
    except OSError as e:  # the disk or the file system, e.g. full or read-only
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}", code=1)
    except Exception as e:
        if "jax" not in sys.modules or distributed.process_count() <= 1:
            raise
        # Exit at once: atexit's jax.distributed.shutdown would wait at a barrier for a dead
        # peer until the heartbeat timeout, then abort with a stack trace.
        interrupts.exit_once(f"error: {distributed.describe_failure(e)}", 1)


def execute(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Parse `argv` (the program name first) and run `main`, as `run_main` does, in-process.

    Every failure a user can cause exits through `fail` (SystemExit); tests call this to feed an
    entry point many inputs without a process each.
    """
    saved = sys.argv
    sys.argv = list(argv)  # config_flags reads its overrides from sys.argv, as app.run leaves it
    try:
        return _report_errors(main, _parse_flags(argv))
    finally:
        sys.argv = saved


def run_main(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(main)` with one-line errors for bad flags, ConfigError and divergence.

    Bad flags and ConfigError exit 2; a run that diverged (NonFiniteError) exits 3; SIGINT and
    SIGTERM exit 130 and 143 with one line (the training loop saves a checkpoint first); a
    preempted multi-process run (every process saved) exits 143; in a multi-process run any other
    failure (e.g. a lost peer) is one line and exit 1.
    """
    # The signal watcher: experiments/__init__.py installed it before any import already;
    # this covers a program that calls run_main without that package running it.
    interrupts.install()
    # Before JAX starts: simulated CPU devices must not abort on a busy host.
    patient_host_devices()
    app.run(lambda argv: _run_then_exit(main, argv), flags_parser=_parse_flags)


def _run_then_exit(main: Callable[[list[str]], Any], argv: list[str]) -> None:
    """`main`, then the process's end with the signal watcher still in charge (its exit code)."""
    try:
        _report_errors(main, argv)
        code = 0
    except SystemExit as e:
        code = e.code
    interrupts.exit_after_main(code)
