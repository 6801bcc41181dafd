"""A small, fast CNN-on-MNIST-1D training config shared by the training and fault tests, and
the in-process runs of an entry point (with the flag reset between them)."""

import pytest
from absl import flags

from configs.common import base_config

SMALL_CNN = dict(name="cnn1d", features=(8, 16), hidden=16)


def small_config(steps: int, *, batch_size: int, checkpoint_every: int, eval_every: int,
                 **overrides):
    """A quiet (no progress bar) config; dict overrides update a section, others replace."""
    c = base_config(model=dict(SMALL_CNN), data=dict(name="mnist1d"), steps=steps,
                    batch_size=batch_size, learning_rate=1e-2,
                    checkpoint_every=checkpoint_every, eval_every=eval_every)
    c.progress = False
    for k, v in overrides.items():
        if isinstance(v, dict):
            c[k].update(v)
        else:
            c[k] = v
    return c


def reset_flags():
    """Forget the flags of an earlier in-process parse (`cli.execute`)."""
    # config_flags defines one flag per override while parsing; drop them between runs.
    flags.FLAGS.unparse_flags()
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)


def run_in_process(main, argv, capsys):
    """(exit code, stderr) of `python -m experiments.X argv` run in this process.

    Goes through the entry point's own parse-and-run path (`cli.execute`); any exception but
    SystemExit fails the test. A test that must not train patches `loop.prepare_workdir`.
    """
    from experiments import cli

    reset_flags()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.execute(main, ["run", *argv])
    return info.value.code, capsys.readouterr().err

