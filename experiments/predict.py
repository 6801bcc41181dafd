"""Predictions from a trained run on new data of its kind.

    python -m experiments.predict --workdir=W --input=FILE [--output=OUT] [--step=S]

The run is reopened with `load_run` (the newest intact checkpoint, or --step). What --input is
depends on the run's data (see cnn_rnn/inference/predict.py): a CSV with the run's columns for a
forecasting run (output: the next `horizon` values after its last row, beside the baselines'
forecasts, as CSV, and a PNG of history + forecast), arrays (.npy/.npz) of examples otherwise
(output: class and probabilities, or values, as CSV; per-step outputs as .npz). Default output:
<workdir>/predictions/<input name>.csv. Bad input is one `error:` line and no output file.
"""

from __future__ import annotations

from absl import flags

from experiments.cli import fail, local_workdir, require, run_main

_WORKDIR = flags.DEFINE_string("workdir", None, "The --workdir of a trained run.")
_INPUT = flags.DEFINE_string("input", None, "New data of the run's kind (see --helpfull).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write (default: "
                              "<workdir>/predictions/<input name>.csv).")
_STEP = flags.DEFINE_integer("step", None, "The checkpoint's step (default: the newest intact).")


def main(argv: list[str]) -> None:
    """Reopen the run, check the paths, predict, and write the outputs whole."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --workdir, --input, --output, --step")
    require(_WORKDIR, _INPUT)
    local_workdir(_WORKDIR.value, "experiments.predict")
    from cnn_rnn.inference import outputs
    from cnn_rnn.inference import predict as p
    from cnn_rnn.training import load_run

    run = load_run(_WORKDIR.value, _STEP.value)
    predictor = p.predictor_for(run)
    output = _OUTPUT.value or p.default_output(run, predictor, _INPUT.value)
    p.check_paths(run, predictor, _INPUT.value, output)
    outputs.check_writable(output)
    result = predictor.predict(run, _INPUT.value)
    with outputs.all_or_nothing() as temp:
        predictor.write(result, output, temp)
    print(f"{run.config['model']['name']} at step {run.step}: predictions in {output}")
    if "index" in result:  # a forecast: show it
        from cnn_rnn.inference.forecast import FORECASTS

        names = [k for k in FORECASTS if k in result]
        print("  ".join(["when".ljust(10), *[n.ljust(14) for n in names]]))
        for i, when in enumerate(result["index"]):
            print("  ".join([str(when).ljust(10), *[f"{result[n][i, 0]:<14.5g}" for n in names]]))


if __name__ == "__main__":
    run_main(main)
