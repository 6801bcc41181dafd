"""Where a run's CPU goes before its first training step, phase by phase (docs/startup.md).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.startup

Process CPU seconds (`time.process_time`, meaningful on a loaded machine where wall time is
not) of each phase `experiments.run` goes through, in its order, for configs/mnist1d_cnn.py.
"""

from __future__ import annotations

import time


def main() -> None:
    """Print the CPU seconds of each startup phase and their total."""
    marks: list[tuple[str, float]] = []
    last = [time.process_time()]

    def mark(name: str) -> None:
        now = time.process_time()
        marks.append((name, now - last[0]))
        last[0] = now

    import jax

    import experiments.run  # noqa: F401 - its imports are part of the startup
    from cnn_rnn.training import distributed, loop, parallel, state, steps
    mark("imports (jax, flax, optax, orbax, the entry point)")
    from cnn_rnn.training.config import complete
    from experiments import config_file

    cfg = complete(config_file.load_config("configs/mnist1d_cnn.py"))
    mark("config file + training.config.complete")
    jax.devices()
    mark("device init")
    data, model, tx = loop.build_run(cfg)
    mark("data built (MNIST-1D generated, or read from its cache)")
    key = jax.random.PRNGKey(cfg["seed"])
    state.check_fits_in_memory(model, tx, data.spec.input_shape, key, cfg["model"]["name"])
    train_state = jax.block_until_ready(
        state.create_train_state(model, tx, data.spec.input_shape, key))
    mark("model init (compiled) and the memory check")
    backend = parallel.make_backend(cfg["parallelism"])
    p_train = backend.compile(steps.train_step, donate_state=True, model=model, spec=data.spec)
    batch = distributed.with_example_ids(data.train_batch(0, cfg["batch_size"]), 0)
    jax.block_until_ready(p_train(backend.put_state(train_state), batch))
    mark("first training step (compile and run)")
    for name, seconds in marks:
        print(f"{seconds:6.2f} s  {name}")
    print(f"{sum(s for _, s in marks):6.2f} s  total to the first step (process CPU)")


if __name__ == "__main__":
    main()
