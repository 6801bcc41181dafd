"""Streaming inference equals the full forward pass at every step (float32: max diff <= 1e-6 of
the output's scale, max |y| or 1, whichever is larger; a few float32 roundings, whatever order the
compiler sums in).

Every recurrent model of register_cell (stacked, masked, many-to-one and many-to-many) and the
TCN's incremental form, and the linear recurrences (LRU, minGRU); bidirectional models and the
Transformer refuse with one line.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.streaming import require_streaming, stream, streaming_models
from cnn_rnn.task import TaskSpec

B, T, D, OUT = 3, 11, 4, 2
TOL = 1e-6
CASES = {
    "rnn": dict(name="rnn", hidden=8),
    "irnn": dict(name="irnn", hidden=8),
    "lstm_stacked": dict(name="lstm", hidden=8, num_layers=2),
    "gru_stacked": dict(name="gru", hidden=8, num_layers=3),
    "tcn": dict(name="tcn", levels=3, hidden=6, kernel_size=3),
    "tcn_channels_k2": dict(name="tcn", channels=(5, 7), kernel_size=2, weight_norm=False),
    "lru": dict(name="lru", hidden=6, d_model=5, num_layers=2),
    "mingru_pool_last": dict(name="mingru", hidden=6, num_layers=2, pool="last"),
}


def _models(config):
    seq = build_model(config, TaskSpec("sequence_regression", OUT, (T, D)))
    one = build_model(config, TaskSpec("regression", OUT, (T, D)))
    return seq, one


def _inputs(seed=0):
    x = jax.random.normal(jax.random.key(seed), (B, T, D))
    lengths = jnp.array([T, 7, 4])
    return x, jnp.arange(T)[None, :] < lengths[:, None]


@jax.jit
def _max_diff(a, b):
    """Max |a - b| relative to the scale of `b` (max |b|, at least 1)."""
    return jnp.max(jnp.abs(a - b)) / jnp.maximum(1.0, jnp.max(jnp.abs(b)))


def _diffs(seq, one, variables, x, mask):
    """Max |stream - full pass| (relative): every step (many-to-many), the readout (many-to-one)."""
    full = seq.apply(variables, x, mask=mask)
    _, ys = stream(seq, variables, x, mask)
    _, ys_one = stream(one, variables, x, mask)
    # Many-to-one: the stream's y at each sequence's last real step is the model's output.
    last = (x.shape[1] - 1 if mask is None else mask.sum(1) - 1) * jnp.ones(x.shape[0], int)
    readout = ys_one[jnp.arange(x.shape[0]), last]
    return _max_diff(ys, full), _max_diff(readout, one.apply(variables, x, mask=mask))


FAST = ("lru",)  # the others in the slow suite (fast-suite time)


@pytest.mark.parametrize("case", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(CASES)])
def test_streaming_equals_the_full_pass_at_every_step(case):
    seq, one = _models(CASES[case])
    x, mask = _inputs()
    variables = jax.jit(seq.init)(jax.random.key(1), x[:1])
    diffs = jax.jit(_diffs, static_argnums=(0, 1))
    for m in (None, mask):
        every, readout = (float(d) for d in diffs(seq, one, variables, x, m))
        print(f"streaming vs full pass, {case}, mask={m is not None}: max relative |diff| "
              f"every step {every:.1e}, many-to-one readout {readout:.1e}")
        assert every <= TOL and readout <= TOL
    # Unmasked, y_t is also the many-to-one output of the prefix that ends at t.
    _, ys_one = jax.jit(lambda v, x: stream(one, v, x))(variables, x)
    t = T // 2
    assert float(_max_diff(ys_one[:, t], jax.jit(one.apply)(variables, x[:, :t + 1]))) <= TOL


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_a_stream_can_be_resumed_from_its_carry():
    seq, _ = _models(CASES["gru_stacked"])
    x, _ = _inputs(2)
    variables = jax.jit(seq.init)(jax.random.key(3), x[:1])
    carry, first = stream(seq, variables, x[:, :5])
    _, rest = stream(seq, variables, x[:, 5:], carry=carry)
    assert float(_max_diff(jnp.concatenate([first, rest], 1), seq.apply(variables, x))) <= TOL


def test_streaming_models_are_the_recurrent_ones_and_the_tcn():
    names = streaming_models()
    assert {"rnn", "irnn", "lstm", "gru", "tcn", "lru", "mingru"} <= set(names)
    assert "transformer" not in names


@pytest.mark.parametrize("config, match", [
    (dict(name="gru", hidden=4, bidirectional=True), r"^model\.bidirectional: .* cannot run "
                                                     r"step by step; accepted: .*gru"),
    (dict(name="transformer", d_model=8, num_heads=2, num_layers=1, mlp_dim=8, causal=True),
     r"^model\.name: .* cannot stream: attention .*key/value cache"),
])
def test_models_that_cannot_stream_refuse_in_one_line(config, match):
    model = build_model(config, TaskSpec("regression", OUT, (T, D)))
    with pytest.raises(ConfigError, match=match) as e:
        require_streaming(model)
    assert "\n" not in str(e.value)
    if hasattr(model, "step"):  # the recurrent model's own methods refuse too
        with pytest.raises(ConfigError):
            model.init_carry(B, D)


def test_the_carry_is_numpy_friendly():
    seq, _ = _models(CASES["lstm_stacked"])
    carry = seq.init_carry(B, D)
    assert all(np.asarray(c).shape == (B, 8) for c in jax.tree_util.tree_leaves(carry))
