"""CI runs the README's test command, then the slow suite, then the linter (docs/tests.md)."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "echo", "set ", "cd ", "SECONDS",
                                                              ))]


def test_ci_runs_the_readme_test_command_then_the_slow_suite_then_ruff():
    blocks = re.findall(r"```bash\n(.*?)\n```", _read("README.md"), re.S)
    readme_test = [b for b in blocks if "pytest" in b]
    assert len(readme_test) == 1, blocks
    commands = _commands(_read(".ci/run"))
    assert commands == [readme_test[0].strip(), "python -m pytest -n 2 -q -m slow",
                        "ruff check ."], commands


def test_ci_script_is_valid_bash_and_stops_at_the_first_failure():
    script = os.path.join(ROOT, ".ci", "run")
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in _read(".ci/run")
    subprocess.run(["bash", "-n", script], check=True)  # syntax only, runs nothing

