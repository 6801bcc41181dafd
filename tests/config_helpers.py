"""A small, fast CNN-on-MNIST-1D training config shared by the training and fault tests, and
the flag reset of tests that run an entry point in-process several times."""

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
