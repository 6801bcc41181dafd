"""Processes: joining JAX's distributed runtime, and who reads, writes and waits for what.

One process per host (or per local group of devices) runs the same program. Process 0 is the
primary: it alone writes metrics, TensorBoard events, the summary and the config, and holds the
workdir lock; every process takes part in checkpoints (Orbax coordinates them) and reads only its
own rows of each global batch. With one process (no distributed runtime) every helper here is a
no-op and the process is the primary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnn_rnn.errors import ConfigError
from cnn_rnn.training import fatal_filter

log = logging.getLogger(__name__)

# Seconds without a heartbeat after which the coordinator declares a process dead and the
# others stop with an error, instead of waiting for it forever (JAX's default is 100).
HEARTBEAT_TIMEOUT_S = 20


class Preempted(Exception):  # noqa: N818 - an event, not a failure
    """A process got SIGTERM; every process saved a checkpoint at `step` and stops."""

    def __init__(self, step: int):
        super().__init__(f"preempted at step {step} (SIGTERM on a process); every process "
                         "saved a checkpoint there; run the same command to resume")
        self.step = step


@dataclasses.dataclass(frozen=True)
class ClusterFlags:
    """`jax.distributed.initialize` arguments given on the command line (None: not given)."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def given(self) -> bool:
        """Whether any of the flags was set."""
        return any(v is not None for v in dataclasses.astuple(self))


def check_flags(flags: ClusterFlags) -> None:
    """Raise ConfigError for an incomplete or inconsistent set of cluster flags."""
    if not flags.given:
        return
    if flags.num_processes is not None and flags.num_processes < 1:
        raise ConfigError("num_processes", f"{flags.num_processes}; accepted: an integer >= 1")
    if flags.process_id is not None and not (
            0 <= flags.process_id < (flags.num_processes or flags.process_id + 1)):
        raise ConfigError("process_id", f"{flags.process_id}; accepted: 0 <= process_id < "
                          f"num_processes ({flags.num_processes})")
    address = flags.coordinator_address
    port = address.rsplit(":", 1)[1] if address is not None and ":" in address else ""
    # A port out of range is not refused by JAX: the process would wait for peers in silence.
    if address is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError("coordinator_address", f"{address!r}; accepted: HOST:PORT with a "
                          "port from 1 to 65535")
    if cluster_detected():
        return  # JAX fills in what is missing from the scheduler's environment
    missing = [f.name for f in dataclasses.fields(flags) if getattr(flags, f.name) is None]
    if missing:
        raise ConfigError(missing[0], "required with the other cluster flags when no cluster "
                          "(SLURM, Open MPI, TPU pod, Kubernetes) is detected; accepted: "
                          "--coordinator_address=HOST:PORT --num_processes=N --process_id=I")


def cluster_detected() -> bool:
    """Whether JAX's cluster auto-detection finds a scheduler (SLURM, Open MPI, TPU pod, K8s)."""
    try:
        from jax._src import clusters  # the detectors jax.distributed.initialize() itself uses
    except ImportError:  # pragma: no cover - a JAX without them: only explicit flags work
        return False
    return any(env.is_env_present() for env in clusters.ClusterEnv._cluster_types
               if not getattr(env, "opt_in_only_method", False))


def initialize(flags: ClusterFlags = ClusterFlags()) -> bool:
    """Join JAX's distributed runtime if flags are given or a cluster is detected.

    A plain single-process run (no flags, no cluster) initializes nothing. Returns whether the
    runtime was joined. Must run before anything touches a JAX device.
    """
    check_flags(flags)
    if not flags.given and not cluster_detected():
        return False
    import jax

    # CPU collectives between processes go through gloo (TCP); other platforms ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # The runtime aborts a survivor with pages of output when the coordinator dies: one line.
    fatal_filter.start(f"process {flags.process_id} of {flags.num_processes}"
                       if flags.process_id is not None else "this process")
    jax.distributed.initialize(coordinator_address=flags.coordinator_address,
                               num_processes=flags.num_processes, process_id=flags.process_id,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    if jax.process_index() == 0:  # the others joined too: initialize returns once all have
        log.info("%d processes joined the distributed runtime (%d devices, %d in this process)",
                 jax.process_count(), jax.device_count(), jax.local_device_count())
    else:
        mute_info_lines()
    return True


def mute_info_lines() -> None:
    """Process 0 says the run's INFO lines once; the others say only warnings and errors.

    Not when our loggers are left at their defaults (absl's `-v`: the caller wants everything).
    """
    for name in ("cnn_rnn", "experiments"):
        logger = logging.getLogger(name)
        if logger.level == logging.INFO:  # set so by experiments.cli's quiet default
            logger.setLevel(logging.WARNING)


def process_index() -> int:
    """This process's index (0 without a distributed runtime)."""
    import jax

    return jax.process_index()


def process_count() -> int:
    """Number of processes in the run (1 without a distributed runtime)."""
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes the run's records (process 0)."""
    return process_index() == 0


def row_range(batch_size: int) -> tuple[int, int]:
    """This process's rows [start, stop) of a global batch: process p of P has [pB/P, (p+1)B/P)."""
    count, index = process_count(), process_index()
    if batch_size % count:
        raise ConfigError("batch_size", f"{batch_size} does not divide over {count} processes; "
                          f"accepted: a multiple of {count}")
    return index * batch_size // count, (index + 1) * batch_size // count


def with_example_ids(rows: dict[str, np.ndarray], start: int) -> dict[str, np.ndarray]:
    """`rows` (a block of a global batch from row `start`) with each row's global `example_id`.

    The ids key dropout by example (see example_dropout.py), so the split never changes it.
    """
    n = len(rows["inputs"])
    return {**rows, "example_id": np.arange(start, start + n, dtype=np.int32)}


def local_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """This process's contiguous block of a global batch, with each row's global `example_id`."""
    start, stop = row_range(len(batch["inputs"]))
    return with_example_ids({k: v[start:stop] for k, v in batch.items()}, start)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (no-op with one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(ok: bool) -> bool:
    """Process 0's `ok`, seen by every process (so all take the same branch)."""
    if process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


@contextlib.contextmanager
def primary_holds(lock: Any, workdir: str) -> Iterator[None]:
    """Process 0 holds `lock` (a context manager) for the block; the others wait for it.

    If process 0 cannot take it, it raises its ConfigError and every other process raises one
    saying so, instead of waiting at the next collective until a timeout.
    """
    if process_count() == 1:
        with lock:
            yield
        return
    stack = contextlib.ExitStack()
    error: ConfigError | None = None
    if is_primary():
        try:
            stack.enter_context(lock)
        except ConfigError as e:
            error = e
    if not agree(error is None):
        if error is not None:
            raise error
        raise ConfigError("workdir", f"process 0 could not lock {workdir!r} (see its error)")
    with stack:
        yield


class PreemptionSync:
    """With several processes, whether all are to save and stop at a step (a process got SIGTERM).

    JAX's preemption sync manager (started by `jax.distributed.initialize`) catches SIGTERM on
    any process and picks one step at which `reached_preemption_sync_point` is true on all of
    them; every process must ask at every step. The multi-process counterpart of
    `interrupts.StopRequest` (see `interrupts.stop_requests`).
    """

    def at(self, step: int) -> bool:
        """Whether every process saves and stops after `step`."""
        from jax.experimental import multihost_utils

        return bool(multihost_utils.reached_preemption_sync_point(step))

    def error(self, step: int) -> Preempted:
        """What the loop raises once it has saved the checkpoint at `step`."""
        return Preempted(step)


def describe_failure(error: BaseException) -> str:
    """One line for an error that stopped this process of a multi-process run."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return (f"process {process_index()} of {process_count()} stopped: {type(error).__name__}: "
            f"{first}; if another process died or was killed, rerun all processes: they resume "
            "from the last checkpoint")
