"""The reliability trials themselves (experiments/reliability.py is their command line).

Apart from the command line so that a test can run a few trials in its own process: this module
defines no flags (an entry point's flags already defined there would collide).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from cnn_rnn.training import interrupts
from cnn_rnn.training.host_devices import env_with_devices

CHECKS = ("signals", "kill", "contention")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small run with every phase: compile, train, evaluation, saves (steps 20, 40, 60).
SMALL = ["--config=configs/mnist1d_cnn.py", "--config.model.features=(8,16)",
         "--config.model.hidden=16", "--config.batch_size=32", "--config.progress=False",
         "--config.steps=60", "--config.log_every=10", "--config.eval_every=30",
         "--config.checkpoint_every=20", "--config.data.num_samples=600"]
CRASH_MARKS = ("Traceback", "Fatal Python error", "Segmentation fault", "Exception ignored",
               "core dumped", "Aborted")
EXIT_LIMIT_S = 60.0
# A clean exit this soon after the signal: the run was in its own exit already.
FINISHING_S = 0.25
TRIALS_FILE = "signal_trials.jsonl"


def run_command(workdir: str, *extra: str) -> list[str]:
    """`python -m experiments.run` of the small run on `workdir`."""
    return [sys.executable, "-m", "experiments.run", *SMALL, f"--workdir={workdir}", *extra]


def env_with(devices: int, **extra: str) -> dict[str, str]:
    """This environment with `devices` forced host devices and unbuffered output."""
    return env_with_devices(devices, PYTHONUNBUFFERED="1", **extra)


def final_state(workdir: str) -> tuple[str, list[Any]]:
    """The run's metrics.jsonl text and the leaves of its newest checkpoint's state."""
    import jax
    import orbax.checkpoint as ocp

    from cnn_rnn.training.checkpoints import Checkpointer

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=100)
    try:
        step = ckpt.steps()[-1]
        state = ckpt.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]
    finally:
        ckpt.close()
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return f.read(), jax.tree_util.tree_leaves(state)


def same_result(a: tuple[str, list[Any]], b: tuple[str, list[Any]]) -> bool:
    """Whether two `final_state`s are equal: metrics text and every parameter, bit for bit."""
    import numpy as np

    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a[1], b[1], strict=True))


@dataclasses.dataclass
class SignalTrial:
    """One signal at one moment and what came of it."""

    signum: int
    delay_s: float
    code: int | None = None
    exit_s: float | None = None
    lines: list[str] = dataclasses.field(default_factory=list)
    crashed: bool = False
    written_before_training: bool = False
    exact: bool | None = None

    @property
    def phase(self) -> str:
        """Where the signal landed, from the line the run printed."""
        text = " ".join(self.lines)
        if "before training" in text:
            return "start-up / compile"
        if match := re.search(r"interrupted at step (\d+)", text):
            return f"training (saved at step {match.group(1)})"
        if "did not finish" in text:
            return "step over the deadline"
        return "after the last step" if text else "none"

    @property
    def ended_first(self) -> bool:
        """Whether the run was already ending when the signal came: a clean exit, no line, at once.

        In its last instant (interrupts.exit_once holds the exit) a run rightly ignores a signal.
        A signal ignored by a run still working shows instead as the rest of the run's length.
        """
        return (self.code == 0 and not self.lines and not self.crashed
                and self.exit_s is not None and self.exit_s < FINISHING_S)

    @property
    def one_line(self) -> bool:
        """Exactly one `interrupted` line, exit 128 + signum, no crash output."""
        return (self.code == 128 + self.signum and len(self.lines) == 1 and not self.crashed)


def _interrupt_once(workdir: str, signum: int, delay_s: float) -> SignalTrial | None:
    """Run, signal `delay_s` after its first line of Python, and classify.

    None if the run ended before the signal, or was already in its exit (`ended_first`). The
    moment is counted from the installation of the watcher (experiments/__init__.py), the first
    thing the program does: before it, during the interpreter's own start-up, no program can
    handle a signal.
    """
    trial = SignalTrial(signum, delay_s)
    proc = subprocess.Popen(run_command(workdir), cwd=ROOT, env=env_with(2),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not interrupts.catches_signals(proc.pid) and proc.poll() is None:
        time.sleep(0.001)
    time.sleep(delay_s)
    if proc.poll() is not None:
        proc.communicate()
        return None
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=EXIT_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    trial.code, trial.exit_s = proc.returncode, time.monotonic() - sent
    trial.lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    trial.crashed = proc.returncode < 0 or any(m in err for m in CRASH_MARKS)
    if trial.ended_first:
        return None
    if "before training" in " ".join(trial.lines):
        trial.written_before_training = wrote_results(workdir)
    return trial


def wrote_results(workdir: str) -> bool:
    """Whether `workdir` holds a checkpoint or a metrics record.

    Not counted: what a run sets up before its first step, each whole (the folder, its lock,
    config.json, an empty checkpoints/ folder, an empty metrics.jsonl and event file).
    """
    ckpts, metrics = os.path.join(workdir, "checkpoints"), os.path.join(workdir, "metrics.jsonl")
    return ((os.path.isdir(ckpts) and any(n.isdigit() for n in os.listdir(ckpts)))
            or (os.path.exists(metrics) and os.path.getsize(metrics) > 0))


def _reference_runs(scratch: str, parallel: int) -> float:
    """`parallel` uninterrupted runs at once (the trials' conditions): their mean length."""
    procs, start = [], time.monotonic()
    for i in range(parallel):
        procs.append(subprocess.Popen(run_command(os.path.join(scratch, f"reference{i}")),
                                      cwd=ROOT, env=env_with(2), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    lengths = []
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("an uninterrupted run failed")
        lengths.append(time.monotonic() - start)
    return sum(lengths) / len(lengths)


def signal_trials(trials: int, seed: int, scratch: str,
                  parallel: int = 1) -> tuple[list[SignalTrial], float]:
    """`trials` signalled runs at random moments, each rerun and compared; and the run's length.

    `parallel` trials run at once. A run stopped before training wrote nothing to resume from:
    it is checked for that instead of rerun (its rerun would be a fresh run). A moment that
    falls after the run's end, or in its exit (`SignalTrial.ended_first`), is not a trial.
    """
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(scratch, TRIALS_FILE))
    length_s = _reference_runs(scratch, parallel)
    expected = final_state(os.path.join(scratch, "reference0"))
    rng, lock, done = random.Random(seed), threading.Lock(), []
    moments = [((signal.SIGINT, signal.SIGTERM)[i % 2], rng.uniform(0.0, 1.05 * length_s))
               for i in range(10 * trials)]

    def worker(index: int) -> None:
        workdir = os.path.join(scratch, f"trial{index}")
        while True:
            with lock:
                if len(done) >= trials or not moments:
                    return
                signum, delay = moments.pop(0)
            shutil.rmtree(workdir, ignore_errors=True)
            trial = _interrupt_once(workdir, signum, delay)
            if trial is None:  # finished before the moment drawn: the next moment
                continue
            if "before training" not in " ".join(trial.lines):
                rerun = subprocess.run(run_command(workdir), cwd=ROOT, env=env_with(2),
                                       capture_output=True, text=True)
                trial.exact = rerun.returncode == 0 and same_result(final_state(workdir),
                                                                    expected)
            with lock:
                if len(done) >= trials:
                    return
                done.append(trial)
                with open(os.path.join(scratch, TRIALS_FILE), "a") as f:  # kept as they come
                    f.write(json.dumps({**dataclasses.asdict(trial), "length_s": length_s})
                            + "\n")
                print(f"trial {len(done)}/{trials}: {signal.Signals(signum).name} at "
                      f"{trial.delay_s:.1f}s: exit {trial.code} in {trial.exit_s:.1f}s, "
                      f"{trial.phase}, lines {len(trial.lines)}, exact resume {trial.exact}",
                      flush=True)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done, length_s


def recorded_trials(scratch: str) -> tuple[list[SignalTrial], float]:
    """The signal trials recorded so far in `scratch` (e.g. of a check cut short)."""
    with open(os.path.join(scratch, TRIALS_FILE)) as f:
        rows = [json.loads(line) for line in f]
    length_s = rows[0]["length_s"] if rows else 0.0
    return [SignalTrial(**{k: v for k, v in r.items() if k != "length_s"}) for r in rows], length_s


def signals_table(trials: Sequence[SignalTrial], length_s: float, parallel: int) -> str:
    """The markdown section of the signal trials (`parallel` of them were run at a time)."""
    rows = []
    for name in ("SIGINT", "SIGTERM"):
        ts = [t for t in trials if signal.Signals(t.signum).name == name]
        phases: dict[str, int] = {}
        for t in ts:
            key = t.phase.split(" (")[0]
            phases[key] = phases.get(key, 0) + 1
        rows.append(
            f"| {name} | {len(ts)} | {sum(t.one_line for t in ts)} | "
            f"{sum(bool(t.exact) for t in ts)} of {sum(t.exact is not None for t in ts)} | "
            f"{sum(t.code == 0 for t in ts)} | "
            f"{sum(t.crashed for t in ts)} | {sum(t.written_before_training for t in ts)} | "
            f"{max((t.exit_s or 0) for t in ts):.1f} | "
            + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) + " |")
    return "\n".join([
        f"{len(trials)} runs of `experiments.run` (the small run of experiments/reliability.py, "
        f"2 host devices; {parallel} at a time on this {os.cpu_count()}-core machine), each "
        "signalled once at a uniformly random moment of its "
        f"{length_s:.0f} s life (counted from its first line of Python, the watcher's "
        "installation), then rerun to the end and compared with an uninterrupted run "
        "(metrics.jsonl and every parameter of the final checkpoint, exactly); a run stopped "
        "before training is checked to have written nothing instead (its rerun is a fresh run).",
        "",
        "| signal | trials | one line, exit 128+n | exact resume | ignored (exit 0) | crashed "
        "| results written before training | slowest exit (s) | where it landed |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows])


def kill_once(victim: int, scratch: str) -> dict[str, Any]:
    """Launch two processes, SIGKILL process `victim` after checkpoint 20, watch the survivor."""
    workdir = os.path.join(scratch, f"kill{victim}")
    shutil.rmtree(workdir, ignore_errors=True)
    proc = subprocess.Popen(_launch_command(workdir), cwd=ROOT, env=env_with(2),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []  # (arrival, line): what came after the kill counts
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln.rstrip("\n"))
                                                          for ln in proc.stdout), daemon=True)
    reader.start()
    while not os.path.isdir(os.path.join(workdir, "checkpoints", "20")):
        if proc.poll() is not None:
            raise RuntimeError("the launch ended before its first checkpoint")
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    os.kill(pids[victim], signal.SIGKILL)
    killed = time.monotonic()
    survivor = pids[1 - victim]
    while _alive(survivor) and time.monotonic() - killed < 120:
        time.sleep(0.05)
    exit_s = time.monotonic() - killed
    proc.wait(timeout=120)
    reader.join(timeout=10)
    after = [ln for t, ln in lines if t > killed and ln.startswith(f"[{1 - victim}] ")]
    rerun = subprocess.run(_launch_command(workdir), cwd=ROOT, env=env_with(2),
                           capture_output=True, text=True)
    # The reference has the same two processes, never killed: floats summed in the same order.
    whole = os.path.join(scratch, "kill_reference")
    if not os.path.isfile(os.path.join(whole, "summary.json")):
        subprocess.run(_launch_command(whole), cwd=ROOT, env=env_with(2), check=True,
                       capture_output=True)
    exact = rerun.returncode == 0 and same_result(final_state(whole), final_state(workdir))
    return {"victim": victim, "exit_s": exit_s, "lines": after, "exact": exact,
            "errors": sum(ln.startswith(f"[{1 - victim}] error:") for ln in after)}


def _launch_command(workdir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.launch", "--num_processes=2",
            "--devices_per_process=2", "--grace_s=60", "--",
            *run_command(workdir, "--config.steps=400")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def kill_table(results: Sequence[dict[str, Any]]) -> str:
    """The markdown section of the kill trials."""
    rows = [f"| process {r['victim']}{' (coordinator)' if r['victim'] == 0 else ''} | "
            f"{r['exit_s']:.1f} | {len(r['lines'])} | {r['errors']} | "
            f"{'yes' if r['exact'] else 'no'} |" for r in results]
    said = [f"- process {r['victim']} killed: " + ("; ".join(f"`{ln}`" for ln in r["lines"])
                                                   or "nothing") for r in results]
    return "\n".join([
        "Two processes (`experiments.launch`, 2 host devices each) of a 400-step run; one is "
        "killed (SIGKILL) after the checkpoint at step 20. Lines: what the survivor printed "
        "after the kill; rerun: the same launch again, whose metrics and final parameters equal "
        "(exactly) those of the same launch never killed.",
        "",
        "| killed | survivor's exit (s) | lines | `error:` lines | rerun exact |",
        "|---|---|---|---|---|", *rows, "", "What the survivor printed after the kill:", "",
        *said])


def contention_trials(trials: int, scratch: str, parallel: int = 1) -> list[tuple[int, float]]:
    """`trials` 8-device runs (`parallel` at once) with two busy loops: (exit code, seconds)."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]

    def stop(signum: int) -> None:  # the busy loops must not outlive a stopped check
        for p in busy:
            p.kill()
        interrupts.exit_once(interrupts.Interrupted(signum).line(), 128 + signum)

    interrupts.forward_signals(stop)

    def one(i: int) -> tuple[int, float]:
        workdir = os.path.join(scratch, f"busy{i}")
        shutil.rmtree(workdir, ignore_errors=True)
        start = time.monotonic()
        try:
            code = subprocess.run(run_command(workdir, "--config.steps=40"), cwd=ROOT,
                                  env=env_with(8), capture_output=True, timeout=3600).returncode
        except subprocess.TimeoutExpired:
            code = -1
        print(f"run {i + 1}/{trials}: exit {code} in {time.monotonic() - start:.0f}s",
              flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        return code, time.monotonic() - start

    try:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            return list(pool.map(one, range(trials)))
    finally:
        for p in busy:
            p.kill()


def contention_table(results: Sequence[tuple[int, float]], load: float, parallel: int) -> str:
    """The markdown section of the contention trials."""
    ok = sum(code == 0 for code, _ in results)
    times = sorted(t for _, t in results)
    return "\n".join([
        f"{ok} of {len(results)} runs on 8 simulated host devices (40 steps, the gradient "
        f"all-reduce at every step; {parallel} at a time) finished with two busy loops (`while "
        f"True: pass`) running beside them on this {os.cpu_count()}-core machine, whose load "
        "average (other users "
        f"included) was {load:.1f} at the start; run time median {times[len(times) // 2]:.0f} s,"
        f" slowest {times[-1]:.0f} s."])


def replace_section(path: str, name: str, text: str) -> None:
    """Replace the text between `<!-- name -->` and `<!-- /name -->` in `path` (or append it)."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    page = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in page and end in page:
        page = page[:page.index(begin)] + block + page[page.index(end) + len(end):]
    else:
        page = page.rstrip("\n") + ("\n\n" if page else "") + block + "\n"
    with open(path, "w") as f:
        f.write(page)
