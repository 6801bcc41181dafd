"""Reopening a finished (or interrupted) run: `load_run(workdir, step=None)`.

The one way to get a trained model back: the workdir's resolved config (`config.json`, written by
the training loop), the data source it trained on (for the task spec and the normalisation), the
model, and the variables of the newest intact checkpoint or of a given step. Checkpoints are
verified by the checksums they were written with (`integrity.py`); a corrupt one is skipped with a
one-line warning in favour of the next older one, as training does, but nothing is moved: reading
a run never changes its workdir.

`RunReader` opens a run once and restores any number of its checkpoints (the ablation's probes
read every one); `load_run` is one reader, one restore.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax

from cnn_rnn.data.base import DataSource
from cnn_rnn.data.registry import build_data
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.checkpoints import Checkpointer
from cnn_rnn.training.optim import build_optimizer
from cnn_rnn.training.state import TrainState, create_train_state

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class Run:
    """A reopened run: what it was, and its trained state at `step`.

    Attributes:
      workdir: the run's folder.
      config: the resolved config the run trained with (a dict, as in config.json).
      data: the data source, rebuilt from the config (spec, normalisation statistics).
      model: the linen module, built as training built it.
      state: the train state restored from the checkpoint at `step` (0: the initial state).
      step: the checkpoint's step.
      meta: the checkpoint's record (config, training seconds so far), {} at step 0.

    """

    workdir: str
    config: dict[str, Any]
    data: DataSource
    model: Any
    state: TrainState
    step: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def spec(self) -> TaskSpec:
        """The task the model was trained for."""
        return self.data.spec

    @property
    def variables(self) -> dict[str, Any]:
        """The linen variables for `model.apply` (params, and batch_stats if any)."""
        return self.state.variables()

    def apply(self, inputs: Any, **kwargs: Any) -> jax.Array:
        """The model's evaluation-mode outputs for normalised `inputs` [B, *input_shape]."""
        return self.model.apply(self.variables, inputs, train=False, **kwargs)


def read_config(workdir: str) -> dict[str, Any]:
    """The resolved config of the run in `workdir` (ConfigError if there is no run there)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isdir(workdir):
        raise ConfigError("workdir", f"no such folder {workdir!r}; accepted: the --workdir of a "
                          "run of experiments.run")
    if not os.path.isfile(path):
        raise ConfigError("workdir", f"{workdir} holds no {CONFIG_FILE}, so no run was started "
                          "there; accepted: the --workdir of a run of experiments.run")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError("workdir", f"{path} is unreadable ({e}); accepted: the config.json "
                          "the training loop wrote") from None


class RunReader:
    """A run's config, data, model and initial state, built once; restores its checkpoints.

    A context manager (the checkpoint folder is opened at the first restore, closed on exit).

    Args:
      workdir: the run's folder.
      config: the run's config as a dict; None reads `<workdir>/config.json`.
      data: the data source, if the caller has already built it.

    """

    def __init__(self, workdir: str, config: Mapping[str, Any] | None = None,
                 data: DataSource | None = None):
        from cnn_rnn.training.loop import init_errors_as_config  # the loop imports much

        self.workdir = os.fspath(workdir)
        self.config = dict(read_config(self.workdir) if config is None else config)
        cfg = self.config
        self.data = build_data(cfg["data"], seed=cfg["seed"]) if data is None else data
        self.model = build_model(cfg["model"], self.data.spec)
        tx = build_optimizer(cfg["optimizer"], cfg["steps"])
        with init_errors_as_config(cfg, self.data.spec.input_shape):
            self.init = create_train_state(self.model, tx, self.data.spec.input_shape,
                                           jax.random.PRNGKey(cfg["seed"]))
        self._dir = os.path.join(self.workdir, "checkpoints")
        self._ckpt: Checkpointer | None = None

    def _checkpointer(self) -> Checkpointer | None:
        if self._ckpt is None and os.path.isdir(self._dir):
            # keep: never let this manager delete anything (it only reads).
            self._ckpt = Checkpointer(self._dir, keep=10**9)
        return self._ckpt

    def steps(self) -> list[int]:
        """Steps with a finished checkpoint, oldest first."""
        ckpt = self._checkpointer()
        return [] if ckpt is None else ckpt.steps()

    def state(self, step: int) -> TrainState:
        """The train state at `step` (0: the initial state), checked against its checksums."""
        return self.load(step).state

    def load(self, step: int | None = None) -> Run:
        """The run at checkpoint `step`, or (None) at its newest intact checkpoint.

        Raises:
          ConfigError: ("workdir") no finished checkpoint, or none intact; ("step") no
            checkpoint at `step`, or that one fails its checksums.

        """
        if step == 0:
            return self._run(self.init, 0, {})
        steps = self.steps()
        if not steps:
            raise ConfigError("workdir", f"{self.workdir} has no finished checkpoint (training "
                              "saves one every checkpoint_every steps and at the end); "
                              "accepted: a workdir whose run saved at least one")
        ckpt = self._checkpointer()
        assert ckpt is not None
        if step is not None:
            if step not in steps:
                raise ConfigError("step", f"no checkpoint at step {step} in {self.workdir}; "
                                  f"accepted: {', '.join(map(str, [0, *steps]))}")
            try:
                state, meta = ckpt.read_verified(step, self.init)
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - corrupt or unreadable: say which
                raise ConfigError("step", f"the checkpoint at step {step} is unreadable or "
                                  f"corrupt ({ckpt.short_reason(e)}); accepted: another of "
                                  f"{', '.join(map(str, steps))}") from e
            return self._run(state, step, meta)
        restored = ckpt.restore_latest(self.init, set_aside=False)
        if restored is None:
            raise ConfigError("workdir", f"every checkpoint in {self._dir} is unreadable or "
                              "corrupt (see the warnings above); accepted: a workdir with an "
                              "intact checkpoint")
        state, meta = restored
        return self._run(state, int(state.step), meta)

    def _run(self, state: TrainState, step: int, meta: dict[str, Any]) -> Run:
        return Run(self.workdir, self.config, self.data, self.model, state, step, meta)

    def close(self) -> None:
        """Release the checkpoint manager, if one was opened."""
        if self._ckpt is not None:
            self._ckpt.close()
            self._ckpt = None

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_run(workdir: str, step: int | None = None) -> Run:
    """Reopen the run in `workdir` at its newest intact checkpoint, or at `step`.

    Args:
      workdir: the `--workdir` of a run of `experiments.run` (or of a sweep point).
      step: a checkpoint's step; None = the newest one that passes its checksums (older ones
        are tried, with a warning each, when newer ones are corrupt); 0 = the initial state.

    Returns:
      A `Run`: config, data source, model, train state, step.

    Raises:
      ConfigError: no run or no intact checkpoint in `workdir`, or no (intact) one at `step`.

    """
    with RunReader(workdir) as reader:
        return reader.load(step)
