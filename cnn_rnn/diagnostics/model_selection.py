"""Early stopping, applied after the fact, and the test metrics of the model it keeps.

The long-horizon forecasting protocol (LTSF-Linear's `EarlyStopping`) evaluates the validation
part after every epoch, keeps the model of the lowest validation loss, stops when `patience`
epochs in a row bring no strictly lower one, and reports the TEST metrics of the kept model.
A run here trains every epoch and checkpoints each; `early_stopping` replays the rule on the
logged validation losses (the epochs after the stop cannot change which model is kept), and
`KeptModelOnTest`, a `run_sweep` after_point hook, evaluates that checkpoint on the test part.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from cnn_rnn.diagnostics.ablation import PointStates
from cnn_rnn.sweep import Point
from cnn_rnn.training import parallel
from cnn_rnn.training.loop import eval_batch_size, evaluate, to_dict
from cnn_rnn.training.metrics import read_metrics
from cnn_rnn.training.run_record import write_json_atomic
from cnn_rnn.training.steps import eval_step

RESULT_FILE = "test_at_best.json"


def early_stopping(losses: Sequence[float], patience: int) -> tuple[int | None, int]:
    """(index of the kept epoch, epochs run) under early stopping with `patience`.

    An epoch improves only on a strictly lower loss (NaN never does); the run stops after
    `patience` epochs in a row without one. The index is None if no loss is finite.
    """
    best, kept, waited = math.inf, None, 0
    for i, loss in enumerate(losses):
        if loss < best:
            best, kept, waited = loss, i, 0
        else:
            waited += 1
            if waited >= patience:
                return kept, i + 1
    return kept, len(losses)


class KeptModelOnTest:
    """run_sweep after_point hook: test metrics of the checkpoint early stopping keeps.

    Adds `selection` to the point's row: the kept epoch, the epochs early stopping runs, their
    validation losses, and `test` (the eval metrics of the kept checkpoint on the test part).
    Cached in the point's folder (`test_at_best.json`) for the run's number of steps.
    """

    def __call__(self, point: Point, workdir: str, row: dict[str, Any]) -> dict[str, Any]:
        """Select, evaluate on the test part, cache and return {"selection": ...}."""
        cfg = to_dict(point.config)
        path = os.path.join(workdir, RESULT_FILE)
        if os.path.exists(path):
            with open(path) as f:
                cached = json.load(f)
            if cached.get("steps") == cfg["steps"]:
                return {"selection": cached}
        evals = [r for r in read_metrics(workdir, "eval") if r["step"] % cfg["eval_every"] == 0]
        losses = [float(r["loss"]) for r in evals]
        kept, run = early_stopping(losses, int(cfg.get("patience", len(losses))))
        out: dict[str, Any] = {"steps": cfg["steps"], "epochs_run": run, "val_losses": losses,
                               "kept_epoch": None if kept is None else kept + 1}
        if kept is not None:
            out["test"] = self.metrics_on_test(cfg, workdir, int(evals[kept]["step"]))
        write_json_atomic(path, out)
        return {"selection": out}

    @staticmethod
    def metrics_on_test(cfg: dict[str, Any], workdir: str, step: int) -> dict[str, float]:
        """Eval metrics of the run's checkpoint at `step` on the test part of its data."""
        cfg = copy.deepcopy(cfg)
        cfg["data"]["eval_split"] = "test"
        backend = parallel.make_backend(cfg.get("parallelism", "pmap"))
        with PointStates(cfg, workdir) as states:
            state = backend.put_state(states.state(step))
            p_eval = backend.compile(eval_step, model=states.model, spec=states.data.spec)
            size = eval_batch_size(cfg, states.data, backend.n_devices)
            return evaluate(p_eval, state, states.data, size, backend)
