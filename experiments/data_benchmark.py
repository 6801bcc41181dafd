"""Measure the input pipeline: source build times, input wait per step, evaluation time.

  python -m experiments.data_benchmark --part=build   # first/second-run build, MNIST + CIFAR-10
  python -m experiments.data_benchmark --part=steps   # input wait vs step time, cnn2d, MNIST size
  python -m experiments.data_benchmark --part=eval    # GRU eval of 10,000 x 784-step sequences
  python -m experiments.data_benchmark --part=roundtrip --steps=500  # .npz vs built-in accuracy
  python -m experiments.data_benchmark --part=offline # unprepared MNIST with no network

No real data is needed: `build` and `steps` use `tfds.testing.mock_data` at the real train split
sizes (mock splits all have the train split's size, so each test split is 6x/5x the real one,
and mock examples are generated rather than PNG-decoded, so only the second-run numbers are
representative of real data); `eval` uses the procedural 28x28 digits read pixel by pixel;
`roundtrip` writes MNIST-1D to an .npz and trains cnn1d and a GRU on it and on the built-in
source at the same seed; `offline` builds MNIST from an empty data_dir (TensorFlow taken as
installed if it is not) and prints the time to the error line and the line.
Prints one line per measurement, each with the load average it ran under.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from absl import flags

from experiments.cli import fail, run_main

_PART = flags.DEFINE_enum("part", "build", ["build", "steps", "eval", "roundtrip", "offline"],
                          "What to measure.")
_STEPS = flags.DEFINE_integer("steps", 40, "Timed (--part=steps) or trained (roundtrip) steps.")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", 10_000, "Sequences (--part=eval).")
_EVAL_BATCHES = flags.DEFINE_list("eval_batch_sizes", ["64", "0"],
                                  "Evaluation batch sizes to compare (0: the default).")
SPLIT_SIZES = {"mnist": 60_000, "cifar10": 50_000}


def load() -> str:
    """Return the 1-minute load average, as text, for the lines that report a time."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def measure_builds() -> None:
    """Build MNIST and CIFAR-10 twice each into a fresh cache; print both times."""
    import tensorflow_datasets as tfds

    from cnn_rnn.data.registry import build_data

    for name, size in SPLIT_SIZES.items():
        with tempfile.TemporaryDirectory() as cache_dir, tfds.testing.mock_data(
                num_examples=size, policy=tfds.testing.MockPolicy.USE_CODE):
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                source = build_data({"name": name, "cache_dir": cache_dir}, seed=0)
                source.train_batch(0, 128)
                times.append(time.perf_counter() - t0)
            print(f"{name} ({size} train + {size} test examples): first-run build "
                  f"{times[0]:.2f}s (decode + cache write), second-run build {times[1]:.2f}s "
                  f"({load()})", flush=True)


def timed_steps(data: Any, config: dict[str, Any], steps: int) -> tuple[float, float, float]:
    """Return (input wait, loop seconds, direct batch seconds) of `steps` prefetched cnn2d steps."""
    import jax

    from cnn_rnn.data.pipeline import prefetch_batches
    from cnn_rnn.training import parallel
    from cnn_rnn.training.loop import build_run
    from cnn_rnn.training.state import create_train_state
    from cnn_rnn.training.steps import train_step

    data, model, tx = build_run(config, data)
    state = parallel.replicate(create_train_state(model, tx, data.spec.input_shape,
                                                  jax.random.PRNGKey(0)))
    p_train = parallel.pmap_step(train_step, donate_state=True, model=model, spec=data.spec)
    n_dev, batch_size = parallel.device_count(), config["batch_size"]
    warmup = 3
    with prefetch_batches(data, batch_size, range(steps + warmup),
                          lambda b: parallel.shard(b, n_dev)) as batches:
        for i, batch in enumerate(batches):
            if i == warmup:  # compiled and running: start counting
                jax.block_until_ready(state)
                batches.wait_seconds, t0 = 0.0, time.perf_counter()
            state, _ = p_train(state, batch)
        jax.block_until_ready(state)
        loop = time.perf_counter() - t0
        wait = batches.wait_seconds
    t0 = time.perf_counter()
    for step in range(steps):
        parallel.shard(data.train_batch(step, batch_size), n_dev)
    return wait, loop, time.perf_counter() - t0


def measure_steps() -> None:
    """Print the input wait per cnn2d step on MNIST-sized data, against the step time."""
    import tensorflow_datasets as tfds

    from cnn_rnn.data.registry import build_data
    from cnn_rnn.training.config import complete
    from configs.images_cnn2d import get_config

    config = complete(get_config())
    with tempfile.TemporaryDirectory() as cache_dir, tfds.testing.mock_data(
            num_examples=SPLIT_SIZES["mnist"], policy=tfds.testing.MockPolicy.USE_CODE):
        data = build_data({"name": "mnist", "cache_dir": cache_dir}, seed=0)
    steps = _STEPS.value
    wait, loop, direct = timed_steps(data, config, steps)
    print(f"cnn2d on MNIST-sized data, batch {config['batch_size']}, {steps} steps: step "
          f"{1000 * loop / steps:.1f} ms, input wait {1000 * wait / steps:.2f} ms/step = "
          f"{100 * wait / loop:.2f}% of the step (building a batch without prefetch: "
          f"{1000 * direct / steps:.2f} ms = {100 * direct / loop:.1f}%) ({load()})", flush=True)


def measure_eval() -> None:
    """Print the time of one GRU evaluation of the 784-step sequences per eval batch size."""
    import jax

    from cnn_rnn.data.registry import build_data
    from cnn_rnn.training import parallel
    from cnn_rnn.training.config import complete
    from cnn_rnn.training.loop import build_run, eval_batch_size, evaluate
    from cnn_rnn.training.state import create_train_state
    from cnn_rnn.training.steps import eval_step
    from configs.pixels import get_config

    config = complete(get_config("model=gru,dataset=digits"))
    data = build_data({**config["data"], "num_eval": _EVAL_EXAMPLES.value}, seed=0)
    data, model, tx = build_run(config, data)
    backend = parallel.make_backend(config["parallelism"])
    state = backend.put_state(create_train_state(model, tx, data.spec.input_shape,
                                                 jax.random.PRNGKey(0)))
    p_eval = backend.compile(eval_step, model=model, spec=data.spec)
    for size in (int(s) for s in _EVAL_BATCHES.value):
        size = eval_batch_size({**config, "eval_batch_size": size}, data, backend.n_devices)
        p_eval(state, next(data.eval_batches(size)))  # compile
        t0 = time.perf_counter()
        metrics = evaluate(p_eval, state, data, size, backend)
        print(f"GRU (hidden {config['model']['hidden']}) eval of {_EVAL_EXAMPLES.value} x "
              f"{data.spec.seq_len}-step sequences at eval batch {size}: "
              f"{time.perf_counter() - t0:.1f}s (accuracy {metrics['accuracy']:.4f}) "
              f"({load()})", flush=True)


def measure_roundtrip() -> None:
    """Train cnn1d and a GRU on MNIST-1D from an .npz and built in; print both accuracies."""
    import numpy as np

    from cnn_rnn.data.mnist1d import load_mnist1d
    from cnn_rnn.training.loop import train_and_evaluate
    from configs import mnist1d_cnn, mnist1d_gru

    d = load_mnist1d()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist1d.npz")
        np.savez(path, x_train=d["x"], y_train=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        arrays = {"name": "arrays", "path": path, "normalize": False}
        for model, module in (("cnn1d", mnist1d_cnn), ("gru", mnist1d_gru)):
            accuracy = {}
            for label, data in (("built-in mnist1d", None), (".npz arrays", arrays)):
                config = module.get_config(f"steps={_STEPS.value}")
                config.progress = False
                if data is not None:
                    config.data = data
                summary = train_and_evaluate(config, os.path.join(tmp, model + label))
                accuracy[label] = summary["eval"]["accuracy"]
            print(f"{model}, {_STEPS.value} steps, seed 0: eval accuracy "
                  + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items())
                  + f"; equal: {len(set(accuracy.values())) == 1}", flush=True)


def measure_offline() -> None:
    """Print the time to the one-line error for unprepared MNIST, and what was left behind."""
    from cnn_rnn.data import tfds_prepare
    from cnn_rnn.data.registry import build_data
    from cnn_rnn.errors import ConfigError

    missing = tfds_prepare.preparation_modules_missing()
    if "tensorflow" in missing:  # get past the "install TensorFlow" error to the network check
        tfds_prepare.preparation_modules_missing = lambda: []
    with tempfile.TemporaryDirectory() as data_dir:
        t0 = time.perf_counter()
        try:
            build_data({"name": "mnist", "data_dir": data_dir}, seed=0)
            print("mnist was prepared: the network is reachable here")
            return
        except ConfigError as e:
            elapsed, line = time.perf_counter() - t0, f"error: {e}"
        left = [os.path.join(d, f) for d, dirs, files in os.walk(data_dir) for f in dirs + files]
    assumed = "TensorFlow taken as installed; " if missing else ""
    print(f"offline failure after {elapsed:.2f}s ({assumed}{len(left)} files left in data_dir; "
          f"{load()}):\n{line}", flush=True)


def main(argv: list[str]) -> None:
    """Run the measurement chosen by --part."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; accepted: --part, --steps, --eval_examples, "
             "--eval_batch_sizes")
    parts = {"build": measure_builds, "steps": measure_steps, "eval": measure_eval,
             "roundtrip": measure_roundtrip, "offline": measure_offline}
    parts[_PART.value]()


if __name__ == "__main__":
    run_main(main)
