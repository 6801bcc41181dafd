"""Reliability trials, run from outside as a user would: signals, dead processes, busy cores.

    python -m experiments.reliability --check=signals --trials=60 --workdir=/tmp/rel
    python -m experiments.reliability --check=kill --trials=3 --workdir=/tmp/rel
    python -m experiments.reliability --check=contention --trials=20 --workdir=/tmp/rel

- signals: SIGINT or SIGTERM (alternating) at a uniformly random moment of a small run's whole
  life (start-up, compilation, training, evaluation, saves, after the last step); each run is then
  rerun to the end and compared with an uninterrupted run (metrics.jsonl and the final
  parameters, exactly). Counts one-line exits, exact resumes, ignored signals and crashes.
- kill: SIGKILL of process 0 (the coordinator) or process 1 of a two-process launch after its
  first checkpoint: the survivor's exit time and the lines it prints, and an exact rerun.
- contention: runs on 8 simulated host devices with two busy loops on the machine.

With `--doc=docs/reliability.md` the check's table replaces its section of that page.
"""

from __future__ import annotations

import os

from absl import flags

from experiments import reliability_trials as rt
from experiments.cli import fail, run_main

_CHECK = flags.DEFINE_enum("check", None, rt.CHECKS, "Which trials to run.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Number of trials.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random moments.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Scratch directory for the runs (emptied).")
_DOC = flags.DEFINE_string("doc", None, "Markdown page whose section for the check is replaced.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Signal or contention trials run at once.")
_RECORDED = flags.DEFINE_bool("recorded", False, "Signals: only tabulate the trials recorded "
                              "in --workdir (e.g. by a check cut short).")


def main(argv: list[str]) -> None:
    """Run the chosen check and print (and optionally record) its table."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --check, --trials, --seed, "
             "--workdir, --doc")
    if _CHECK.value is None:
        fail(f"--check: required; accepted: {', '.join(rt.CHECKS)}")
    if _TRIALS.value < 1:
        fail(f"--trials: {_TRIALS.value}; accepted: an integer >= 1")
    if _PARALLEL.value < 1:
        fail(f"--parallel: {_PARALLEL.value}; accepted: an integer >= 1")
    if not _WORKDIR.value:
        fail("--workdir: required (a scratch directory for the runs)")
    os.makedirs(_WORKDIR.value, exist_ok=True)
    load = os.getloadavg()[0]
    if _CHECK.value == "signals" and _RECORDED.value:
        text = rt.signals_table(*rt.recorded_trials(_WORKDIR.value), _PARALLEL.value)
    elif _CHECK.value == "signals":
        text = rt.signals_table(*rt.signal_trials(_TRIALS.value, _SEED.value, _WORKDIR.value,
                                                  _PARALLEL.value), _PARALLEL.value)
    elif _CHECK.value == "kill":
        text = rt.kill_table([rt.kill_once(i % 2, _WORKDIR.value)
                           for i in range(_TRIALS.value)])
    else:
        text = rt.contention_table(rt.contention_trials(_TRIALS.value, _WORKDIR.value,
                                                  _PARALLEL.value), load, _PARALLEL.value)
    print(text)
    if _DOC.value:
        rt.replace_section(_DOC.value, _CHECK.value, text)


if __name__ == "__main__":
    run_main(main)
