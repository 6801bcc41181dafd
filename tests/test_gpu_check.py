"""The prepared GPU check (experiments/gpu_check.py) runs end to end on the CPU (--dry_run)."""

import json

import pytest

from experiments import gpu_check


@pytest.mark.slow  # eight child processes, each compiling its step: minutes on two cores
def test_dry_run_runs_every_step(cli, tmp_path):
    out = tmp_path / "gpu"
    r = cli("experiments.gpu_check", "--dry_run", f"--out={out}", devices=1, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["steps"]) == list(gpu_check.STEPS)
    assert all(s["status"] == "ok" for s in results["steps"].values()), results
    cudnn = results["steps"]["cudnn"]["result"]
    # The cuDNN layer path (reference kernel on the CPU) agrees with the scan, zero lengths too.
    assert cudnn["all_within_tolerance"] and len(cudnn["cases"]) == 5
    assert any(c["zero_length"] and c["bidirectional"] for c in cudnn["cases"])
    for name in gpu_check.BENCHMARKS:
        rows = results["steps"][name]["result"]["rows"]
        assert rows and all(row["step_ms"] > 0 for row in rows)
    tests = results["steps"]["tests"]["result"]
    assert tests["tests"] >= 1 and not tests["failed"]
    runs = results["steps"]["accuracy"]["result"]["runs"]
    assert set(runs) == set(gpu_check.ACCURACY_CONFIGS)
    assert all(run["evals"] and 0 <= run["evals"][-1]["accuracy"] <= 1 for run in runs.values())
    summary = (out / "summary.md").read_text()
    assert "| cudnn | ok |" in summary and "## bench_lstm" in summary


@pytest.mark.parametrize("args,field", [(["--steps=tests,gpus"], "--steps"),
                                        (["--budget_s=-1"], "--budget_s"),
                                        ([], "--out")])
def test_bad_flags_are_one_line(cli, tmp_path, args, field):
    out = [] if field == "--out" else [f"--out={tmp_path / 'o'}"]
    r = cli("experiments.gpu_check", *out, *args, devices=1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and field in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_summary_lists_every_step_and_benchmark_rows():
    row = dict(label="lstm", impl="cnn_rnn", seq_len=8, batch=2, hidden=4, step_ms=1.5,
               compile_s=2.0, ratio_vs_baseline=None)
    results = {"dry_run": False, "steps": {
        "tests": {"status": "ok", "seconds": 3, "headline": "9 tests"},
        "bench_lstm": {"status": "cut at its limit (45 s)", "seconds": 45,
                       "result": {"config": "configs/benchmarks/gpu.py", "rows": [row]}}}}
    text = gpu_check.summary_markdown(results)
    assert "| tests | ok | 3 | 9 tests |" in text
    assert "| lstm | cnn_rnn | 8 | 2 | 4 | 1.5 | 2 |  |" in text
    assert "on the GPU" in text
