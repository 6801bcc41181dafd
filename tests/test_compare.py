"""experiments.compare: one table and one PNG for several finished runs; bad workdirs fail."""

import json

import pytest
from trained_runs import forecast_run

from cnn_rnn.errors import ConfigError
from cnn_rnn.inference import compare


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    return [forecast_run(base, m)[0] for m in ("gru", "tcn")]


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_table_and_figure_of_two_runs(runs, cli, tmp_path):
    out = tmp_path / "curves.png"
    r = cli("experiments.compare", *map(str, runs), f"--output={out}", devices=1)
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| run | model | params | steps | metric | final | best | "
                               "baseline | train s |")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["forecast_gru", "forecast_tcn"]
    assert all("mse_original" in ln for ln in lines[2:])
    assert out.stat().st_size > 10000


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_best_is_the_lowest_error_and_the_final_is_the_last(runs):
    r = compare.read_run(str(runs[0]))
    values = [e["mse_original"] for e in r["evals"]]
    assert r["best"] == min(values) and r["final"] == values[-1] and len(values) == 2
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert r["summary"]["baseline"]["value"] == summary["baseline"]["value"]


def test_a_workdir_without_a_finished_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^workdirs: .* has no summary\.json"):
        compare.read_run(str(tmp_path))
