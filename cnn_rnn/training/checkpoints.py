"""Orbax checkpoints of the train state, one folder per step under <workdir>/checkpoints/.

Each checkpoint holds the state (StandardSave) and a small JSON record of what produced it (the
config, training seconds so far), so that a resume with a different config is refused instead of
silently restarting. Orbax writes each step to a temporary folder and renames it when complete,
so a crash mid-save never replaces a good checkpoint; a checkpoint that fails to read (truncated,
corrupted) is set aside with a warning in favour of the next newest. A checkpoint that reads
fine but whose state does not fit the current train state (another optimizer or model) is a
config problem: ConfigError, and the checkpoint stays where it is.

With several processes every one of them calls save and restore (Orbax's multi-host support:
process 0 writes the shared files and renames the finished step; all meet at its barriers); the
workdir must then be one shared file system (or bucket) that every process sees.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnn_rnn.errors import ConfigError
from cnn_rnn.training import distributed
from cnn_rnn.training.state import TrainState

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves and restores TrainStates with an Orbax CheckpointManager (the `args=` API)."""

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=True)
        # Handlers named up front: item_metadata() needs them before any save or restore.
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=handlers)

    def steps(self) -> list[int]:
        """Steps that have a finished checkpoint, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: TrainState, meta: Mapping[str, Any]) -> None:
        """Write the (unreplicated) state and its metadata at `step`, replacing none."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))))
        self.manager.wait_until_finished()

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON record saved beside the state at `step`."""
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

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

    def restore(self, step: int, target: TrainState) -> TrainState:
        """The state saved at `step`, with `target`'s structure, shapes and dtypes."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))
        return out["state"]

    def restore_latest(self, target: TrainState,
                       check_meta: Callable[[dict[str, Any]], None] = lambda meta: None,
                       ) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest readable checkpoint as (state, meta), or None if there is none.

        `target` gives the structure, shapes and dtypes. `check_meta` sees each checkpoint's
        record before its state is read and may raise (a different run's checkpoint must be
        refused, not mistaken for a corrupt one). A readable checkpoint whose state does not fit
        `target` raises ConfigError and is left in place. Unreadable checkpoints are set aside
        with a warning, newest first, so one corrupt save costs at most `checkpoint_every` steps.
        """
        for step in reversed(self.steps()):
            try:
                meta = self.read_meta(step)
            except Exception:  # noqa: BLE001 - unreadable record: handled as corrupt below
                meta = None
            if meta is not None:
                check_meta(meta)
            try:
                if meta is None:
                    raise ValueError("its metadata record cannot be read")
                self.check_fits(step, target)
                state = self.restore(step, target)
            except ConfigError:
                raise  # a readable checkpoint of another config: never set aside
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                if _is_structure_mismatch(e):
                    # check_fits compares leaves and shapes; Orbax also compares empty nodes.
                    raise ConfigError("workdir", f"checkpoint at step {step} does not fit this "
                                      "config's train state (another optimizer or model?); use "
                                      "a new --workdir or the config that wrote it") from e
                moved = self._set_aside(step)
                log.warning("checkpoint at step %d is unreadable (%s: %s); moved it to %s and "
                            "trying an older one", step, type(e).__name__,
                            (str(e).splitlines() or [""])[0][:200], moved)
                continue
            return state, meta
        return None

    def _set_aside(self, step: int) -> str:
        # Out of the manager's folder, so that the step can be written afresh; kept for autopsy.
        src = os.path.join(self.directory, str(step))
        dst_dir = os.path.join(os.path.dirname(self.directory), "unreadable_checkpoints")
        dst = os.path.join(dst_dir, f"{step}-{int(time.time())}")
        if distributed.is_primary():  # one mover; the others wait for it
            os.makedirs(dst_dir, exist_ok=True)
            shutil.move(src, dst)
        distributed.barrier(f"checkpoint-set-aside-{step}")
        self.manager.reload()
        return dst

    def close(self) -> None:
        """Finish pending writes and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _is_structure_mismatch(e: Exception) -> bool:
    # Orbax's wording for a restore target whose tree differs from the saved one (0.12.x).
    return isinstance(e, ValueError) and "tree structures do not match" in str(e)
