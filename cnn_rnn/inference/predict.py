"""Predictions from a reopened run (`load_run`) on new data of the run's kind.

What an input is depends on the run's data source, through a small table, `PREDICTORS` (data
source name -> `Predictor`): the files it accepts, how it turns them into predictions, and how it
writes them. A new data kind (audio files for a speech source, say) adds one entry with
`register_predictor`. Sources without an entry take arrays (`ARRAYS`):
  input   `.npy`, or `.npz` with an `inputs` array (or `x`, or its only array): examples
          [N, *input_shape] (or one example [*input_shape]) in the units the model was fed.
  output  classification: CSV `index, class, p_0 .. p_{K-1}` (softmax probabilities);
          regression: CSV `index, y_0 ..`; per-step and seq2seq kinds: `.npz` with `outputs`
          (and `classes` for the classification kinds).
Timeseries runs forecast from a CSV (`forecast.py`): CSV + PNG.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from cnn_rnn.errors import ConfigError
from cnn_rnn.inference import forecast

BATCH = 256  # examples per forward pass


@dataclasses.dataclass(frozen=True)
class Predictor:
    """How one data kind predicts.

    Attributes:
      suffixes: input file suffixes accepted (the first is the one named in errors).
      predict: (run, input path) -> a result dict (ConfigError("input") if the input does not fit).
      write: (result, output path, temp) -> None; writes every file through `temp(path)` (see
        `outputs.all_or_nothing`), so that nothing is half-written.
      output_suffixes: output suffixes accepted, given the run (default first).

    """

    suffixes: tuple[str, ...]
    predict: Callable[[Any, str], dict[str, Any]]
    write: Callable[[dict[str, Any], str, Callable[[str], str]], None]
    output_suffixes: Callable[[Any], tuple[str, ...]]


PREDICTORS: dict[str, Predictor] = {}


def register_predictor(data_name: str, predictor: Predictor) -> None:
    """Make runs of the data source `data_name` predict with `predictor`."""
    PREDICTORS[data_name] = predictor


def predictor_for(run: Any) -> Predictor:
    """The run's predictor: its data source's entry, else arrays."""
    return PREDICTORS.get(run.config["data"]["name"], ARRAYS)


# --- arrays ------------------------------------------------------------------------------------

def read_arrays(path: str, input_shape: tuple[int, ...]) -> np.ndarray:
    """Examples float32 [N, *input_shape] from a .npy or .npz (ConfigError("input") otherwise)."""
    want = f"[N, {', '.join(map(str, input_shape))}]"
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError("input", f"cannot read {path} as .npy/.npz ({str(e).splitlines()[0]}); "
                          f"accepted: a .npy or .npz of inputs {want}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            key = next((k for k in ("inputs", "x") if k in keys), keys[0] if len(keys) == 1
                       else None)
            if key is None:
                raise ConfigError("input", f"{path} holds {', '.join(keys)}; accepted: an .npz "
                                  f"with an 'inputs' (or 'x') array {want}")
            array = loaded[key]
    else:
        array = loaded
    if tuple(array.shape) == tuple(input_shape):
        array = array[None]
    if tuple(array.shape[1:]) != tuple(input_shape) or not np.issubdtype(array.dtype, np.number):
        raise ConfigError("input", f"{path} holds {array.dtype} of shape {array.shape}; the run "
                          f"takes inputs {want}; accepted: numbers of that shape")
    return array.astype(np.float32)


def predict_arrays(run: Any, path: str) -> dict[str, Any]:
    """The model's outputs (and classes, probabilities) for the examples in `path`."""
    x = read_arrays(path, run.spec.input_shape)
    apply = jax.jit(run.apply)
    outputs = np.concatenate([np.asarray(apply(x[i:i + BATCH])) for i in range(0, len(x),
                                                                               BATCH)])
    result: dict[str, Any] = {"kind": run.spec.kind, "outputs": outputs}
    if run.spec.kind in ("classification", "sequence_classification", "seq2seq"):
        result["probabilities"] = np.asarray(jax.nn.softmax(outputs, axis=-1))
        result["classes"] = outputs.argmax(-1)
    return result


def write_arrays(result: dict[str, Any], path: str, temp: Callable[[str], str]) -> None:
    """CSV for one output per example, .npz for per-step outputs (see the module docstring)."""
    tmp = temp(path)
    if path.endswith(".npz"):
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v for k, v in result.items() if isinstance(v, np.ndarray)})
        return
    if result["kind"] == "classification":
        k = result["probabilities"].shape[-1]
        header = ["index", "class", *[f"p_{i}" for i in range(k)]]
        rows = [[i, int(c), *[f"{p:.6g}" for p in probs]] for i, (c, probs) in enumerate(
            zip(result["classes"], result["probabilities"], strict=True))]
    else:
        out = result["outputs"]
        header = ["index", *[f"y_{i}" for i in range(out.shape[-1])]]
        rows = [[i, *[f"{v:.6g}" for v in row]] for i, row in enumerate(out)]
    with open(tmp, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)


def _array_outputs(run: Any) -> tuple[str, ...]:
    # One output per example fits a CSV; outputs per step need an array file.
    one = run.spec.kind in ("classification", "regression")
    return (".csv", ".npz") if one else (".npz",)


ARRAYS = Predictor((".npz", ".npy"), predict_arrays, write_arrays, _array_outputs)


# --- forecasting -------------------------------------------------------------------------------

def write_forecast(result: dict[str, Any], path: str, temp: Callable[[str], str]) -> None:
    """The forecast CSV and, beside it, the PNG of history + forecasts."""
    forecast.write_csv(result, temp(path))
    forecast.plot(result, temp(forecast.png_path(path)),
                  f"{os.path.basename(path)}: next {len(result['index'])} steps")


register_predictor("timeseries", Predictor((".csv",), forecast.forecast, write_forecast,
                                           lambda run: (".csv",)))


# --- the whole of a prediction ----------------------------------------------------------------

def check_paths(run: Any, predictor: Predictor, input_path: str, output: str) -> None:
    """ConfigError("input"/"output") for a missing input or an unsuitable output suffix."""
    if not os.path.isfile(input_path):
        raise ConfigError("input", f"no such file {input_path!r}; accepted: a "
                          f"{' or '.join(predictor.suffixes)} file")
    if not input_path.endswith(predictor.suffixes):
        raise ConfigError("input", f"{input_path} is not a {' or '.join(predictor.suffixes)} "
                          f"file, which a {run.config['data']['name']} run takes")
    outs = predictor.output_suffixes(run)
    if not output.endswith(outs):
        raise ConfigError("output", f"{output} does not end in {' or '.join(outs)}; accepted: "
                          f"{' or '.join(outs)} for a {run.spec.kind} run")


def default_output(run: Any, predictor: Predictor, input_path: str) -> str:
    """`<workdir>/predictions/<input name><suffix>` (the first output suffix the run takes)."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return os.path.join(run.workdir, "predictions", stem + predictor.output_suffixes(run)[0])
