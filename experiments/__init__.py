"""Entry points: `python -m experiments.<name>` (run, sweep, ablate, benchmark, demo, launch ...).

Python imports this package before the entry point's module, so running one installs the signal
watcher here, before any other import: a Ctrl-C or SIGTERM during the first imports is one line
and exit 130 / 143 as well (cnn_rnn/training/interrupts.py). Importing the package from a test or
a notebook changes nothing.
"""

import sys


def _run_as_entry_point() -> bool:
    argv = sys.orig_argv
    pairs = zip(argv, argv[1:], strict=False)
    return any(a == "-m" and b.startswith("experiments.") for a, b in pairs)


if _run_as_entry_point():
    from cnn_rnn.training import interrupts

    interrupts.install()
