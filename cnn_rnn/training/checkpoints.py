"""Orbax checkpoints of the train state, one folder per step under <workdir>/checkpoints/.

Each checkpoint holds the state (StandardSave) and a small JSON record of what produced it (the
config, training seconds so far), so that a resume with a different config is refused instead of
silently restarting. Orbax writes each step to a temporary folder and renames it when complete,
so a crash mid-save never replaces a good checkpoint. Checksums (see integrity.py) catch what
changed on disk afterwards. A checkpoint that fails to read or fails a checksum is set aside with
a one-line warning in favour of the next newest. A checkpoint that reads fine but whose state
does not fit the current train state (another optimizer or model) is a config problem:
ConfigError, and the checkpoint stays where it is. A full disk while saving is a
ConfigError on `workdir` (older checkpoints stay intact).

With several processes every one of them calls save and restore (Orbax's multi-host support:
process 0 writes the shared files and renames the finished step; all meet at its barriers); the
workdir must then be one shared file system (or bucket) that every process sees.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnn_rnn import paths
from cnn_rnn.errors import ConfigError
from cnn_rnn.training import distributed, integrity
from cnn_rnn.training.state import TrainState

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores TrainStates with an Orbax CheckpointManager (the `args=` API)."""

    def __init__(self, directory: str, keep: int):
        self.directory = paths.absolute(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=True)
        # Handlers named up front: item_metadata() needs them before any save or restore.
        _drop_closed_loop_reports()
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=handlers)

    def steps(self) -> list[int]:
        """Steps that have a finished checkpoint, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: TrainState, meta: Mapping[str, Any]) -> None:
        """Write the (unreplicated) state and its metadata at `step`, replacing none.

        The record gets the state's checksum and its own; the folder a manifest of checksums.
        A full disk raises ConfigError("workdir", ...) after removing the partial save.
        """
        if step in self.manager.all_steps():
            return
        record = integrity.seal({**meta, "state_sha256": integrity.state_digest(state)})
        try:
            with _orbax_errors_unlogged():
                self.manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)))
                self.manager.wait_until_finished()
            if distributed.is_primary():  # one writer of the shared folder's manifest
                integrity.write_manifest(os.path.join(self.directory, str(step)))
            distributed.barrier(f"checkpoint-manifest-{step}")
        except Exception as e:  # noqa: BLE001 - only a full disk is turned into a user error
            if _os_error(e, errno.ENOSPC, errno.EDQUOT) is None:
                raise
            self._remove_partial(step)
            raise ConfigError("workdir", f"no space left on the device while saving the "
                              f"checkpoint at step {step} in {self.directory}; the older "
                              "checkpoints are intact; free space and run again") from None

    def _remove_partial(self, step: int) -> None:
        # Orbax's temporary folder for `step` (and a committed folder without its manifest).
        # Writes still in flight when the save failed may recreate it: look again until none.
        for _ in range(20):
            partial = [name for name in paths.listdir(self.directory)
                       if name == str(step) or name.startswith(f"{step}.orbax-checkpoint-tmp")]
            for name in partial:
                with contextlib.suppress(OSError):
                    paths.remove_tree(paths.join(self.directory, name))
            if not partial:
                break
            time.sleep(0.1)
        self.manager.reload()

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record saved beside the state at `step` (ChecksumError if it was altered)."""
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return integrity.check_seal(dict(out["meta"]))

    def check_fits(self, step: int, target: TrainState) -> None:
        """Raise ConfigError if the state saved at `step` has other leaves or shapes than `target`.

        Reads only the checkpoint's tree metadata (cheap); an unreadable one raises whatever
        Orbax raises, which callers treat as corruption.
        """
        tree = self.manager.item_metadata(step)["state"]
        if tree is None:
            raise ValueError("its state metadata cannot be read")
        saved = ocp.tree.to_flat_dict(tree)
        wanted = ocp.tree.to_flat_dict(target)
        diffs = [f"{'.'.join(map(str, k))}: only in the checkpoint" for k in saved
                 if k not in wanted]
        diffs += [f"{'.'.join(map(str, k))}: not in the checkpoint" for k in wanted
                  if k not in saved]
        for k in saved.keys() & wanted.keys():
            old = getattr(saved[k], "shape", None)
            if old is not None and tuple(old) != np.shape(wanted[k]):
                diffs.append(f"{'.'.join(map(str, k))}: shape {tuple(old)} in the checkpoint vs "
                             f"{np.shape(wanted[k])} now")
        if diffs:
            more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
            raise ConfigError("workdir", f"checkpoint at step {step} does not fit this config's "
                              f"train state ({'; '.join(sorted(diffs)[:3])}{more}); was it "
                              "written with another optimizer or model? Use a new --workdir or "
                              "the config that wrote it")

    def restore(self, step: int, target: TrainState, digest: str | None = None) -> TrainState:
        """The state saved at `step`, with `target`'s structure, shapes and dtypes.

        With `digest` (the record's state_sha256), ChecksumError if the arrays differ from it.
        """
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))
        if digest is not None and integrity.state_digest(out["state"]) != digest:
            raise integrity.ChecksumError("its arrays fail their checksum")
        return out["state"]

    def read_verified(self, step: int, target: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(state, meta) at `step` after every check: manifest, record seal, fit, arrays' digest.

        ConfigError if the state does not fit `target`; anything else means corrupt or unreadable.
        """
        integrity.check_manifest(os.path.join(self.directory, str(step)))
        with _orbax_errors_unlogged():
            meta = self.read_meta(step)
            self.check_fits(step, target)
            return self.restore(step, target, meta.pop("state_sha256", None)), meta

    @staticmethod
    def short_reason(e: BaseException) -> str:
        """A short, printable cause of a failed read (for one-line warnings and errors)."""
        return _short_reason(e)

    def restore_latest(self, target: TrainState,
                       check_meta: Callable[[dict[str, Any]], None] = lambda meta: None,
                       set_aside: bool = True,
                       ) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest intact checkpoint as (state, meta), or None if there is none.

        `target` gives the structure, shapes and dtypes. `check_meta` sees each checkpoint's
        record before its state is read and may raise (a different run's checkpoint must be
        refused, not mistaken for a corrupt one). A readable checkpoint whose state does not fit
        `target` raises ConfigError and is left in place. Unreadable checkpoints, and those that
        fail a checksum, are set aside with a one-line warning, newest first, so one corrupt save
        costs at most `checkpoint_every` steps; a warning also says when none is left. With
        `set_aside=False` (a reader such as `load_run`) they are only skipped, with the warning.
        """
        steps = self.steps()
        for step in reversed(steps):
            try:
                integrity.check_manifest(os.path.join(self.directory, str(step)))
                with _orbax_errors_unlogged():  # our one warning below says it
                    meta = self.read_meta(step)
            except Exception as e:  # noqa: BLE001 - unreadable or altered: set aside below
                meta, error = None, e
            if meta is not None:
                check_meta(meta)
            try:
                if meta is None:
                    raise error
                with _orbax_errors_unlogged():
                    self.check_fits(step, target)
                    state = self.restore(step, target, meta.pop("state_sha256", None))
            except ConfigError:
                raise  # a readable checkpoint of another config: never set aside
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                if _is_structure_mismatch(e):
                    # check_fits compares leaves and shapes; Orbax also compares empty nodes.
                    raise ConfigError("workdir", f"checkpoint at step {step} does not fit this "
                                      "config's train state (another optimizer or model?); use "
                                      "a new --workdir or the config that wrote it") from e
                if set_aside:
                    self._set_aside(step)
                log.warning("checkpoint at step %d is unreadable (%s); %s, trying an older one",
                            step, _short_reason(e), "set aside" if set_aside else "skipped")
                continue
            return state, meta
        if steps and set_aside:
            log.warning("no intact checkpoint left in %s; starting again from step 0",
                        os.path.basename(os.path.dirname(self.directory)) or self.directory)
        return None

    def _set_aside(self, step: int) -> str:
        # Out of the manager's folder, so that the step can be written afresh; kept for autopsy.
        src = os.path.join(self.directory, str(step))
        dst_dir = os.path.join(os.path.dirname(self.directory), "unreadable_checkpoints")
        dst = os.path.join(dst_dir, f"{step}-{int(time.time())}")
        if distributed.is_primary():  # one mover; the others wait for it
            paths.makedirs(dst_dir)
            paths.move(src, dst)
        distributed.barrier(f"checkpoint-set-aside-{step}")
        self.manager.reload()
        return dst

    def close(self) -> None:
        """Finish pending writes and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _drop_closed_loop_reports() -> None:
    """Keep late I/O callbacks of a failed save from printing tracebacks (installed once).

    When a write fails (a full disk), TensorStore still completes the writes in flight on its own
    threads, during the clean-up and up to the process's exit; each completion calls back into
    Orbax's asyncio loop, already closed by the failure, and the callback's RuntimeError is
    reported as unraisable: pages of tracebacks around our one line. Those (and only those) are
    dropped.
    """
    if getattr(sys.unraisablehook, "drops_closed_loop", False):
        return
    previous = sys.excepthook, sys.unraisablehook

    def closed_loop(value: BaseException | None) -> bool:
        return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not closed_loop(value):
            previous[0](kind, value, tb)

    def unraisablehook(info: Any) -> None:
        if not closed_loop(info.exc_value):
            previous[1](info)

    unraisablehook.drops_closed_loop = True
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def _is_structure_mismatch(e: Exception) -> bool:
    # Orbax's wording for a restore target whose tree differs from the saved one (0.12.x).
    return isinstance(e, ValueError) and "tree structures do not match" in str(e)


@contextlib.contextmanager
def _orbax_errors_unlogged() -> Iterator[None]:
    """Keep Orbax from logging each failed read or write (with tracebacks from its threads).

    The failure still reaches the caller as an exception (a full disk as one line, a corrupt
    checkpoint as one warning, anything else re-raised); only the duplicate log records, dozens
    of lines for one full disk, are dropped.
    """

    def not_orbax(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname

    logger = logging.getLogger("absl")
    logger.addFilter(not_orbax)
    try:
        yield
    finally:
        logger.removeFilter(not_orbax)


def _os_error(e: BaseException, *codes: int) -> OSError | None:
    """The first OSError with one of `codes` in e's chain of causes (Orbax wraps them)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in codes:
            return e
        if "No space left on device" in str(e) and errno.ENOSPC in codes:
            return OSError(errno.ENOSPC, "No space left on device")
        e = e.__cause__ or e.__context__
    return None


def _short_reason(e: BaseException) -> str:
    """A short, printable cause: our own message, or the exception's type and first words."""
    if isinstance(e, integrity.ChecksumError):
        return str(e)[:45]
    text = re.sub(r"<[^<>]*>", "", (str(e).splitlines() or [""])[0])  # no <bound method ...>
    text = " ".join(text.split())
    return f"{type(e).__name__}: {text}"[:45].rstrip() if text else type(e).__name__
