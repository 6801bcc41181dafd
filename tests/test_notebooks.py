"""The teaching notebooks: generated from their percent-format sources, and runnable on a CPU.

Every `notebooks/<name>.py` (not starting with `_`) is a notebook source; its committed
`<name>.ipynb` must hold the same cells. Each notebook is executed top to bottom with nbclient in a
"python3" kernel running this interpreter, on the CPU with its small defaults; each ends with
assertions on its own numbers. The quickstart runs with 8 forced host devices and must report
training on all 8.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from cnn_rnn.training.host_devices import env_with_devices
from tests.conftest import FAST_COMPILE_FLAGS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.py") if not p.name.startswith("_"))
DEVICES = {"quickstart": 8}  # forced host devices per notebook; 1 for the others
BADGE = "https://colab.research.google.com/github/cnn-rnn/cnn_rnn/blob/main/notebooks/{}.ipynb"
# Per cell: a hang guard, not a speed target (the CPU defaults take about a minute on an idle
# 2-core machine, several times that on a loaded one; a wall-time assertion failed CI at 301 s).
CELL_TIMEOUT_S = 1800


def kernel_env(devices: int, workdir: Path) -> dict[str, str]:
    """The kernel's environment: CPU backend, `devices` host devices, runs under `workdir`.

    The kernel compiles as a user's would, without the suite's FAST_COMPILE_FLAGS: the notebooks
    train long enough that optimised code pays for its compile (quickstart: 55 s, against 86 s).
    """
    env = env_with_devices(devices if devices > 1 else None)
    env["XLA_FLAGS"] = " ".join(f for f in env["XLA_FLAGS"].split()
                                if f.split("=")[0] not in FAST_COMPILE_FLAGS)
    env["JAX_PLATFORMS"] = "cpu"
    env["CNN_RNN_NOTEBOOK_WORKDIR"] = str(workdir)
    env.pop("CNN_RNN_NOTEBOOK_SIZE", None)  # the notebook picks "small" on the CPU itself
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def execute(nb: nbformat.NotebookNode, env: dict[str, str], cwd: Path,
            timeout: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Run every cell of `nb` in a fresh python3 kernel; raises on the first failing cell."""
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def text_outputs(nb: nbformat.NotebookNode) -> str:
    """All stream and text/plain outputs of the executed notebook, concatenated."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def test_the_shipped_notebooks_are_found():
    assert {"quickstart", "vanishing_gradients", "cnn_vs_rnn"} <= set(NAMES)
    orphans = {p.stem for p in NOTEBOOKS.glob("*.ipynb")} - set(NAMES)
    assert not orphans, f"notebooks without a .py source: {orphans}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_the_cells_of_its_source(name):
    source = jupytext.read(NOTEBOOKS / f"{name}.py", fmt="py:percent")
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert cells(committed) == cells(source), (
        f"notebooks/{name}.ipynb is stale: run python notebooks/_build.py")
    assert len(committed.cells) > 3 and any(c.cell_type == "markdown" for c in committed.cells)


def test_build_check_agrees():
    result = subprocess.run([sys.executable, str(NOTEBOOKS / "_build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_colab_ready_and_stripped(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["accelerator"] == "TPU"
    assert nb.cells[0].cell_type == "markdown"
    assert BADGE.format(name) in nb.cells[0].source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first_code.source
    assert '"pip", "install"' in first_code.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name
    assert nb.cells[-1].cell_type == "code" and "assert " in nb.cells[-1].source


def test_kernel_runs_this_interpreter(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    execute(nb, kernel_env(1, tmp_path), tmp_path, timeout=60)
    assert os.path.realpath(text_outputs(nb).strip()) == os.path.realpath(sys.executable)


# Every notebook trains for tens of seconds to minutes: they run in the slow suite (CI runs it
# after the fast one), which keeps the README's test command within its 10 minutes.
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path):
    devices = DEVICES.get(name, 1)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    workdir = tmp_path / "runs"
    execute(nb, kernel_env(devices, workdir), tmp_path)
    out = text_outputs(nb)
    assert "OK:" in out  # printed by the last cell once its assertions pass
    assert workdir.is_dir() and any(workdir.iterdir())  # runs went where they were told
    if name == "quickstart":
        assert "local devices: 8" in out
        assert "on all 8 local devices" in out
        assert "8 device(s) in 1 process(es)" in out and "16 examples per device" in out


def test_notebook_settings_follow_the_environment(monkeypatch, tmp_path):
    from cnn_rnn.errors import ConfigError
    from cnn_rnn.notebook import notebook_settings

    monkeypatch.setenv("CNN_RNN_NOTEBOOK_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CNN_RNN_NOTEBOOK_SIZE", "full")
    assert notebook_settings("x") == ("full", str(tmp_path / "runs"))
    assert (tmp_path / "runs").is_dir()
    monkeypatch.delenv("CNN_RNN_NOTEBOOK_SIZE")
    assert notebook_settings("x")[0] == "small"  # the tests run on the CPU
    monkeypatch.setenv("CNN_RNN_NOTEBOOK_SIZE", "big")
    with pytest.raises(ConfigError, match="accepted: small, full"):
        notebook_settings("x")
