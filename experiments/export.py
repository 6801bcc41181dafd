"""A trained run as `jax.export` artifacts that run without this codebase.

    python -m experiments.export --workdir=W [--output=FOLDER] [--step=S]

Writes forward.jax (batch dimension symbolic), init_carry.jax and step.jax for models that
stream, and spec.json (input spec, normalisation, usage) into FOLDER (default <workdir>/export);
prints each artifact's size and load time and checks that the deserialized forward pass gives
load_run's outputs. See cnn_rnn/inference/export.py.
"""

from __future__ import annotations

import os

from absl import flags

from experiments.cli import fail, local_workdir, require, run_main

_WORKDIR = flags.DEFINE_string("workdir", None, "The --workdir of a trained run.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the artifacts (default: "
                              "<workdir>/export).")
_STEP = flags.DEFINE_integer("step", None, "The checkpoint's step (default: the newest intact).")


def main(argv: list[str]) -> None:
    """Reopen the run, export it, check the artifact against the run, report sizes and times."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --workdir, --output, --step")
    require(_WORKDIR)
    local_workdir(_WORKDIR.value, "experiments.export")
    import importlib.util

    if importlib.util.find_spec("flatbuffers") is None:
        fail("export: jax.export serializes with the flatbuffers package, which is not "
             "installed; accepted: pip install -e '.[export]'")
    import numpy as np
    from jax import export as jax_export

    from cnn_rnn.inference import export, outputs
    from cnn_rnn.training import load_run

    run = load_run(_WORKDIR.value, _STEP.value)
    folder = os.path.abspath(_OUTPUT.value or os.path.join(run.workdir, "export"))
    outputs.check_writable(os.path.join(folder, export.SPEC))
    with outputs.all_or_nothing() as temp:
        spec = export.export_run(run, folder, temp)
    x = export.example_inputs(run)
    with open(os.path.join(folder, export.FORWARD), "rb") as f:
        forward = jax_export.deserialize(bytearray(f.read()))
    diff = float(np.max(np.abs(np.asarray(forward.call(x)) - np.asarray(run.apply(x)))))
    print(f"{spec['model']} at step {run.step} exported to {folder}")
    for name, size in spec["bytes"].items():
        print(f"  {name}: {size / 1024:.1f} KiB, load "
              f"{1e3 * export.load_seconds(os.path.join(folder, name)):.1f} ms")
    print(f"  exported forward vs load_run on {len(x)} examples: max |diff| {diff:.1e}")
    if spec["streaming"] and "refused" in spec["streaming"]:
        print(f"  no streaming step: {spec['streaming']['refused']}")


if __name__ == "__main__":
    run_main(main)
