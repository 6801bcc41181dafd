"""Test setup: 8 forced host devices (set before jax is imported) and shared helpers."""

import os
import shutil
import tempfile

from cnn_rnn.training.host_devices import (  # imports no JAX
    env_with_devices,
    patient_host_devices,
    with_defaults,
)

# The suite checks results, not speed, and compiling is most of its time: XLA's CPU backend at its
# lowest optimisation level, with its older elemental emitter for fusions instead of the MLIR fusion
# emitters, compiles the same programs faster (docs/tests.md has the measurements).
# Every process a test starts inherits these flags (`env_with_devices`), so results compared
# across processes come from the same compiler settings. Flags the user set win, and
# CNN_RNN_TEST_OPTIMIZED=1 tests the code XLA compiles by default.
FAST_COMPILE_FLAGS = {"--xla_backend_optimization_level": "0",
                      "--xla_llvm_disable_expensive_passes": "true",
                      "--xla_cpu_use_fusion_emitters": "false"}
if os.environ.get("CNN_RNN_TEST_OPTIMIZED") != "1":
    os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""), FAST_COMPILE_FLAGS)

# 8 host devices, with the flags that keep them from aborting on a busy CI machine (the entry
# points that tests start as subprocesses add those flags themselves).
patient_host_devices(os.environ, count=8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent compilation cache per test session, shared by the xdist workers and every
# process the tests start (JAX reads these variables; workers and subprocesses inherit them):
# the suite compiles the same small models over and over (each run, resume, trial and entry-point
# process), and a cached executable is the one the compiler would produce again. Every compile
# is kept, the many small ones too: the subprocesses repeat them all (measured on test_cli,
# test_recurrent and test_fault_tolerance: 137 s with only those over 300 ms kept, 114 s with all).
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"cnn_rnn_test_jax_cache_{os.getpid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Likewise the generated-data cache (MNIST-1D, `cnn_rnn/data/mnist1d.py`): generated once per
# session, not once per process, and never read from the user's own cache.
_OWN_DATA_CACHE = "CNN_RNN_CACHE_DIR" not in os.environ
os.environ.setdefault("CNN_RNN_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"cnn_rnn_test_data_cache_{os.getpid()}"))

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A shell starts background jobs with SIGINT ignored, and children inherit that: the signal tests
# (and the entry points they start) need Python's default Ctrl-C however the suite was launched.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cli(module: str, *args: str, devices: int = 8, timeout: int = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args...` from the repo root with `devices` host devices."""
    e = env_with_devices(devices, PYTHONUNBUFFERED="1")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    """The run_cli helper as a fixture."""
    return run_cli


@pytest.fixture
def never_train(monkeypatch):
    """An input the checks let through would start training: stop it as a visible failure."""
    from cnn_rnn.errors import ConfigError
    from cnn_rnn.training import loop

    def accepted(workdir):
        raise ConfigError("ACCEPTED", "the checks let this input through")

    monkeypatch.setattr(loop, "prepare_workdir", accepted)


@pytest.fixture(autouse=True)
def tfds_cache_root(tmp_path, monkeypatch):
    """Decoded tfds splits are cached in the test's folder, never beside a (mocked) dataset."""
    from cnn_rnn.data import tfds_cache

    root = tmp_path / "tfds_cache"
    monkeypatch.setattr(tfds_cache, "default_cache_root", lambda ds: str(root))
    return root


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's caches go when the session ends (in the controller only)."""
    if hasattr(config, "workerinput"):
        return
    for own, var in ((_OWN_CACHE, "JAX_COMPILATION_CACHE_DIR"),
                     (_OWN_DATA_CACHE, "CNN_RNN_CACHE_DIR")):
        if own:
            shutil.rmtree(os.environ[var], ignore_errors=True)
