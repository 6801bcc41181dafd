"""Simulated devices on a CPU (`--xla_force_host_platform_device_count`) that survive a busy host.

XLA runs the programs of all simulated CPU devices on one shared intra-op thread pool and meets
them at every collective (the gradient all-reduce) in an in-process rendezvous, whose waiting
devices each block a pool thread. Under contention one device falls behind: the others already
block all but one pool thread when its convolution splits into Eigen tasks on that pool and
waits for them, so it never reaches the rendezvous (measured: 7 of 8 arrived, still 7 after the
deadline was raised from 40 s to 600 s), and XLA aborts the process (SIGABRT, `rendezvous.cc:
Termination timeout for all reduce`). So wherever this project forces host devices it also runs
each device's ops single-threaded (`--xla_cpu_multi_thread_eigen=false`: nothing waits on the
shared pool inside an op; 8 devices keep a 2-core CPU busy anyway) and gives a starved thread a
longer deadline.

Both of XLA:CPU's pools (the client's, which runs each device's program, and the intra-op one,
on which the thunk executor runs a program's independent operations, collectives included) have
max(cores, devices) threads: exactly one per device on a small machine. A device waiting at a
rendezvous holds its thread; when the others hold every thread of a pool, the device that has
not arrived has its remaining work queued behind them, and it stays queued after the load is
gone. So where host devices are forced the pools get THREADS_PER_DEVICE threads per device
(XLA sizes them from the NPROC variable; idle threads cost nothing but memory). This module
imports no JAX: it must run before JAX reads XLA_FLAGS and NPROC.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
TIMEOUT_FLAG = "--xla_cpu_collective_call_terminate_timeout_seconds"
EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"
# Flags added where host devices are forced and the user did not set them.
PATIENT_FLAGS = {EIGEN_FLAG: "false", TIMEOUT_FLAG: "600"}
# XLA's DefaultThreadPoolSize() reads this variable (else the core count).
POOL_SIZE_VAR = "NPROC"
THREADS_PER_DEVICE = 8


def with_device_count(xla_flags: str, count: int | None) -> str:
    """`xla_flags` with its other flags kept and `count` host devices forced (None: none forced).

    What a parent process gives a child that needs another device count: the parent's own
    flags (a test session's compile options, say) must reach the child too.
    """
    flags = [f for f in xla_flags.split() if not f.startswith(DEVICE_COUNT_FLAG)]
    if count is not None:
        flags.append(f"{DEVICE_COUNT_FLAG}={count}")
    return " ".join(flags)


def env_with_devices(count: int | None, **extra: str) -> dict[str, str]:
    """A copy of this process's environment with `with_device_count` applied and `extra` set."""
    env = dict(os.environ, **extra)
    env["XLA_FLAGS"] = with_device_count(env.get("XLA_FLAGS", ""), count)
    return env


def with_defaults(xla_flags: str, defaults: dict[str, str]) -> str:
    """`xla_flags` with each flag of `defaults` (name -> value) added unless already set."""
    flags = xla_flags.split()
    return " ".join(flags + [f"{name}={value}" for name, value in defaults.items()
                             if not any(f.startswith(name + "=") for f in flags)])


def with_host_devices(xla_flags: str, count: int | None) -> str:
    """`xla_flags` forcing `count` host devices (None: keep its own) that survive contention.

    PATIENT_FLAGS are added only where host devices are forced, each unless already set.
    """
    flags = xla_flags if count is None else with_device_count(xla_flags, count)
    if any(f.startswith(DEVICE_COUNT_FLAG) for f in flags.split()):
        return with_defaults(flags, PATIENT_FLAGS)
    return " ".join(flags.split())


def patient_host_devices(environ: MutableMapping[str, str] = os.environ,
                         count: int | None = None) -> None:
    """Rewrite `environ["XLA_FLAGS"]` with `with_host_devices` (before JAX starts).

    Where host devices are forced, also size XLA's thread pools (POOL_SIZE_VAR) to
    THREADS_PER_DEVICE threads per device, unless the variable is set.
    """
    flags = with_host_devices(environ.get("XLA_FLAGS", ""), count)
    if flags:
        environ["XLA_FLAGS"] = flags
    forced = [f for f in flags.split() if f.startswith(DEVICE_COUNT_FLAG + "=")]
    value = forced[-1].split("=", 1)[1] if forced else ""
    if value.isdigit() and POOL_SIZE_VAR not in environ:
        environ[POOL_SIZE_VAR] = str(THREADS_PER_DEVICE * int(value))
