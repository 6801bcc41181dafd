"""One prepared check of the codebase on a GPU: `python -m experiments.gpu_check --out=DIR`.

First install the project with the CUDA wheels (docs/gpu.md): `pip install -e ".[cuda,test]"`
(and `pip install torch` for the PyTorch cuDNN baseline). Then this command, in at most
`--budget_s` seconds (default 480), runs these steps, each in its own process with its own time
limit, and writes what each measured under `--out` as soon as it has it:

  environment   GPU model, driver, JAX/flax versions, the devices JAX sees
  tests         a fast slice of the test suite on the GPU (models, training, checkpoints)
  cudnn         impl="cudnn" vs the scan path for the LSTM: outputs and gradients, masks,
                1-2 layers, bidirectional (jax's NaN-gradient report), zero-length sequences
  bench_lstm    configs/benchmarks/gpu.py: our LSTM (scan, cuDNN, bf16) vs PyTorch cuDNN,
                H=512, T=512, B=64 (goal: ours <= 1.2x PyTorch)
  bench_pit     configs/benchmarks/parallel_in_time.py:gpu: quasi-DEER / DEER GRU vs the scan
                up to T=16384 (goal: >= 10x faster at small H; where the crossover is)
  bench_linear  configs/benchmarks/linear_scan.py:full: associative-scan LRU/minGRU vs the
                sequential LSTM up to T=16384 (goal: >= 10x faster at T=4096)
  bench_engines configs/benchmarks/scan_engines.py:full: the scan engines alone
  accuracy      time to accuracy: MNIST-1D CNN and GRU (configs/mnist1d_cnn.py, mnist1d_gru.py)

`--out` receives one folder per step (its raw results), and `summary.md`, `results.json` and
`log.txt` (every step's output) after each step: whatever the time limit cuts off, what ran
is kept. `--dry_run` runs every step on the CPU at tiny sizes (cuDNN through its pure-JAX
reference kernel, no PyTorch rows when torch is absent), so that the command is known to work
before a GPU ever sees it; tests/test_gpu_check.py runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from absl import flags

from experiments.cli import fail, run_main

STEPS = ("environment", "tests", "cudnn", "bench_lstm", "bench_pit", "bench_linear",
         "bench_engines", "accuracy")
# Seconds each step may take on the GPU: 455 in all, inside the default budget of 480.
LIMITS = dict(environment=30, tests=90, cudnn=60, bench_lstm=45, bench_pit=80,
              bench_linear=60, bench_engines=40, accuracy=60)
# A dry run compiles as much on two CPU cores as the GPU run does on one GPU: more time a step.
DRY_SLOWDOWN = 10
BENCHMARKS = dict(bench_lstm="configs/benchmarks/gpu.py",
                  bench_pit="configs/benchmarks/parallel_in_time.py:gpu",
                  bench_linear="configs/benchmarks/linear_scan.py:full",
                  bench_engines="configs/benchmarks/scan_engines.py:full")
# The test slice: single-device model, training and checkpoint tests (the 8-device ones need
# simulated CPU devices: `-k` leaves them out).
TEST_FILES = ("tests/test_recurrent.py", "tests/test_cnn.py", "tests/test_tcn.py",
              "tests/test_transformer.py", "tests/test_linear_recurrence.py",
              "tests/test_checkpoint_integrity.py", "tests/test_training.py")
DRY_TEST = ("tests/test_cnn.py", "-k", "mask_zeroes_padding")
ACCURACY_CONFIGS = dict(cnn="configs/mnist1d_cnn.py", gru="configs/mnist1d_gru.py")

_OUT = flags.DEFINE_string("out", None, "Folder for the results (created).")
_DRY = flags.DEFINE_bool("dry_run", False, "Every step on the CPU at tiny sizes.")
_BUDGET = flags.DEFINE_float("budget_s", None, "Seconds for all steps together (default 480; "
                              "with --dry_run, 10x that).")
_ONLY = flags.DEFINE_list("steps", list(STEPS), f"Steps to run, of: {', '.join(STEPS)}.")
_STEP = flags.DEFINE_string("step", None, "(internal) run one step in this process.")


def child_env(dry_run: bool) -> dict[str, str]:
    """The environment of a step's process: the platform, and JAX's GPU memory taken on demand."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Steps run one after another, but each must leave the GPU's memory to the next.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["JAX_PLATFORMS"] = "cpu" if dry_run else env.get("GPU_CHECK_PLATFORM", "cuda")
    return env


# --- the steps (each runs in its own process and returns a JSON-able dict) ----------------------


def step_environment(out: str, dry_run: bool) -> dict[str, Any]:
    """The GPU (nvidia-smi), the devices JAX sees and the versions that timings depend on."""
    from experiments.benchmark import environment

    info: dict[str, Any] = environment()
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
    import jax

    info["devices"] = [str(d) for d in jax.devices()]
    info["ok"] = True
    return info


def step_tests(out: str, dry_run: bool) -> dict[str, Any]:
    """A fast slice of the test suite on the check's platform; counts from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    xml = os.path.join(out, "junit.xml")
    args = list(DRY_TEST) if dry_run else [*TEST_FILES, "-k", "not device and not distributed"]
    env = child_env(dry_run)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={xml}", *args], capture_output=True, text=True, env=env)
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**counts, "failed": failed, "exit_code": proc.returncode,
            "ok": proc.returncode == 0}


def _max_diff(a: Any, b: Any) -> float:
    import jax
    import numpy as np

    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y)))
                     for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))


def step_cudnn(out: str, dry_run: bool) -> dict[str, Any]:
    """impl="cudnn" against impl="scan" on the same parameters: outputs, gradients, NaNs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cnn_rnn.models.rnn import CELLS, RNN, cudnn

    if dry_run:  # no cuDNN on a CPU: the same layer code with jax's reference kernel
        cudnn.require_cudnn = lambda: "reference"
    b, t, d, h = (3, 7, 4, 5) if dry_run else (16, 100, 32, 64)
    x = jax.random.normal(jax.random.key(0), (b, t, d))
    lengths = jnp.array([t, 0, *[max(1, t - 3 * i) for i in range(b - 2)]])  # one empty sequence
    mask = jnp.arange(t)[None, :] < lengths[:, None]
    cases = []
    for num_layers, bidirectional, masked in [(1, False, False), (1, False, True),
                                              (2, False, True), (1, True, False),
                                              (2, True, True)]:
        scan = RNN(CELLS["lstm"](hidden=h), num_layers=num_layers, bidirectional=bidirectional,
                   return_sequences=True, out_features=3)
        fast = scan.clone(impl="cudnn")
        params = scan.init(jax.random.key(1), x)["params"]
        m = mask if masked else None

        def loss(p: Any, module: RNN, m: Any = m) -> Any:
            y = module.apply({"params": p}, x, mask=m)
            return jnp.sum(jnp.sin(y)), y

        (l0, y0), g0 = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
            params, scan)
        (l1, y1), g1 = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
            params, fast)
        finite = bool(all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(g1)))
        cases.append(dict(num_layers=num_layers, bidirectional=bidirectional, masked=masked,
                          zero_length=masked, output_max_diff=_max_diff(y0, y1),
                          grad_max_diff=_max_diff(g0, g1), grads_finite=finite,
                          loss_rel_diff=float(abs(l1 - l0) / max(1e-12, abs(l0)))))
    tol = 1e-4
    ok = all(c["grads_finite"] and c["output_max_diff"] < tol and c["grad_max_diff"] < 10 * tol
             for c in cases)
    return {"shape": dict(batch=b, length=t, input=d, hidden=h), "tolerance": tol,
            "all_within_tolerance": ok, "ok": ok, "cases": cases}


def _shrink(config: Any) -> None:
    """Tiny sizes for a dry run on the CPU; PyTorch rows only where torch is installed."""
    from cnn_rnn.benchmarking.cases import torch_available

    config.seq_lens, config.batches, config.hiddens = (8,), (2,), (4,)
    config.input_dim, config.repeats, config.min_repeats, config.warmup = 4, 1, 1, 0
    if not torch_available():
        config.models = tuple(dict(m, impls=tuple(i for i in m["impls"] if i != "torch"))
                              for m in config.models)
        if config.baseline == "impl:torch":
            config.baseline = ""


def step_benchmark(name: str) -> Callable[[str, bool], dict[str, Any]]:
    """The step that times the benchmark config `BENCHMARKS[name]` (experiments.benchmark)."""

    def run(out: str, dry_run: bool) -> dict[str, Any]:
        from experiments.benchmark import run_benchmark
        from experiments.config_file import load_config

        config = load_config(BENCHMARKS[name])
        # The check's time is short: fewer repeats than the configs' publication settings.
        config.repeats, config.budget_s = min(config.repeats, 5), min(config.budget_s, 3.0)
        if dry_run:
            _shrink(config)
            from cnn_rnn.models.rnn import cudnn

            cudnn.require_cudnn = lambda: "reference"
        rows = run_benchmark(config, out)
        keep = ("label", "impl", "seq_len", "batch", "hidden", "step_ms", "compile_s",
                "peak_bytes", "ratio_vs_baseline", "notes")
        return {"config": BENCHMARKS[name], "rows": [{k: r.get(k) for k in keep} for r in rows],
                "ok": bool(rows)}

    return run


def step_accuracy(out: str, dry_run: bool) -> dict[str, Any]:
    """MNIST-1D CNN and GRU: eval accuracy against training time, one short run each."""
    from cnn_rnn.training.metrics import read_metrics

    result: dict[str, Any] = {}
    steps = 20 if dry_run else 1500
    for name, config in ACCURACY_CONFIGS.items():
        workdir = os.path.join(out, name)
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.run", f"--config={config}",
             f"--workdir={workdir}", f"--config.steps={steps}", "--config.eval_every="
             f"{max(1, steps // 5)}", "--config.checkpoint_every=" + str(steps)],
            capture_output=True, text=True, env=child_env(dry_run))
        wall = time.time() - start
        print(proc.stderr[-2000:])
        evals = [dict(step=r["step"], accuracy=r.get("accuracy"))
                 for r in read_metrics(workdir, "eval")]
        summary_path = os.path.join(workdir, "summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
        result[name] = dict(config=config, steps=steps, wall_s=round(wall, 1),
                            train_seconds=summary.get("train_seconds"), evals=evals,
                            exit_code=proc.returncode)
    return {"runs": result, "ok": all(r["exit_code"] == 0 for r in result.values())}


STEP_FUNCTIONS: dict[str, Callable[[str, bool], dict[str, Any]]] = {
    "environment": step_environment, "tests": step_tests, "cudnn": step_cudnn,
    "accuracy": step_accuracy, **{name: step_benchmark(name) for name in BENCHMARKS}}


# --- the driver ----------------------------------------------------------------------------------


def summary_markdown(results: dict[str, Any]) -> str:
    """The results so far as a short Markdown page: one line per step, then benchmark tables."""
    lines = ["# GPU check", "", "Generated by `python -m experiments.gpu_check` "
             f"({'dry run on the CPU' if results.get('dry_run') else 'on the GPU'}).", "",
             "| step | status | seconds | |", "|---|---|---|---|"]
    for name, r in results["steps"].items():
        lines.append(f"| {name} | {r['status']} | {r['seconds']} | {r.get('headline', '')} |")
    for name, r in results["steps"].items():
        rows = (r.get("result") or {}).get("rows")
        if rows:
            lines += ["", f"## {name}: `{r['result']['config']}`", "",
                      "| label | impl | T | B | H | step ms | compile s | vs baseline |",
                      "|---|---|---|---|---|---|---|---|"]
            for row in rows:
                ratio = row.get("ratio_vs_baseline")
                lines.append(
                    f"| {row['label']} | {row['impl']} | {row['seq_len']} | {row['batch']} | "
                    f"{row['hidden']} | {row['step_ms']:.3g} | {row['compile_s'] or 0:.3g} | "
                    f"{'' if ratio is None else f'{ratio:.3g}'} |")
    return "\n".join(lines) + "\n"


def headline(name: str, result: dict[str, Any]) -> str:
    """One line of what a step found."""
    if name == "environment":
        return f"{result.get('device')}; {result.get('nvidia_smi', '')}"
    if name == "tests":
        return (f"{result['tests']} tests, {result['failures']} failed, {result['errors']} "
                f"errors, {result['skipped']} skipped")
    if name == "cudnn":
        worst = max(c["grad_max_diff"] for c in result["cases"])
        return (f"within {result['tolerance']}: {result['all_within_tolerance']}; worst gradient "
                f"difference {worst:.2e}")
    if name == "accuracy":
        return "; ".join(f"{k}: {(v['evals'] or [{}])[-1].get('accuracy')} after {v['steps']} "
                         f"steps in {v['wall_s']} s" for k, v in result["runs"].items())
    return f"{len(result.get('rows', []))} rows"


def run_steps(out: str, steps: list[str], dry_run: bool, budget_s: float) -> dict[str, Any]:
    """Run each step in a child process under its limit; write the summary after each."""
    os.makedirs(out, exist_ok=True)
    results: dict[str, Any] = {"dry_run": dry_run, "steps": {}}
    deadline = time.time() + budget_s
    log_path = os.path.join(out, "log.txt")
    open(log_path, "w").close()
    for name in steps:
        left = deadline - time.time()
        limit = min(left, LIMITS[name] * (DRY_SLOWDOWN if dry_run else 1))
        entry: dict[str, Any] = {"status": "skipped (no time left)", "seconds": 0}
        if limit > 5:
            folder = os.path.join(out, name)
            os.makedirs(folder, exist_ok=True)
            start = time.time()
            cmd = [sys.executable, "-m", "experiments.gpu_check", f"--step={name}",
                   f"--out={folder}", f"--dry_run={dry_run}"]
            print(f"[gpu_check] {name}: up to {limit:.0f} s", flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                      env=child_env(dry_run))
                output, code = proc.stdout + proc.stderr, proc.returncode
                entry["status"] = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired as e:
                output = ((e.stdout or b"").decode(errors="replace")
                          + (e.stderr or b"").decode(errors="replace"))
                entry["status"] = f"cut at its limit ({limit:.0f} s)"
            entry["seconds"] = round(time.time() - start, 1)
            with open(log_path, "a") as f:
                f.write(f"===== {name} ({entry['status']}, {entry['seconds']} s)\n{output}\n")
            result_path = os.path.join(folder, "result.json")
            if os.path.exists(result_path):
                with open(result_path) as f:
                    entry["result"] = json.load(f)
                entry["headline"] = headline(name, entry["result"])
            elif name in BENCHMARKS and os.path.exists(os.path.join(folder, "results.json")):
                with open(os.path.join(folder, "results.json")) as f:  # rows timed before a cut
                    entry["result"] = {"config": BENCHMARKS[name], "rows": json.load(f)}
                entry["headline"] = headline(name, entry["result"]) + " (partial)"
        results["steps"][name] = entry
        print(f"[gpu_check] {name}: {entry['status']} {entry.get('headline', '')}", flush=True)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(summary_markdown(results))
    return results


def main(argv: list[str]) -> None:
    """Run the check (or, with --step, one step of it in this process)."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    if not _OUT.value:
        fail("--out: required (a folder for the results)")
    if _STEP.value:
        if _STEP.value not in STEP_FUNCTIONS:
            fail(f"--step: unknown {_STEP.value!r}; accepted: {', '.join(STEPS)}")
        result = STEP_FUNCTIONS[_STEP.value](_OUT.value, _DRY.value)
        with open(os.path.join(_OUT.value, "result.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)
        if not result["ok"]:
            sys.exit(1)
        return
    unknown = [s for s in _ONLY.value if s not in STEPS]
    if unknown:
        fail(f"--steps: unknown {unknown}; accepted: {', '.join(STEPS)}")
    budget = _BUDGET.value or 480.0 * (DRY_SLOWDOWN if _DRY.value else 1)
    if budget <= 0:
        fail(f"--budget_s: must be > 0, got {budget}")
    results = run_steps(_OUT.value, list(_ONLY.value), _DRY.value, budget)
    bad = [n for n, r in results["steps"].items() if r["status"] != "ok"]
    print(f"[gpu_check] done: {len(results['steps']) - len(bad)} of {len(results['steps'])} "
          f"steps ok; summary in {os.path.join(_OUT.value, 'summary.md')}")
    if bad:
        fail(f"steps not ok: {', '.join(bad)} (see {os.path.join(_OUT.value, 'log.txt')})",
             code=1)


if __name__ == "__main__":
    run_main(main)
