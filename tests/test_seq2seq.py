import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.data.registry import build_data
from cnn_rnn.diagnostics.encoder_flow import encoder_state_gradients
from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model
from cnn_rnn.models.seq2seq import RecurrentSeq2Seq, TransformerSeq2Seq
from cnn_rnn.task import TaskSpec
from cnn_rnn.training.losses import loss_and_metrics

VOCAB, LENGTH = 6, 5
SPEC = TaskSpec(kind="seq2seq", num_outputs=VOCAB + 1, input_shape=(LENGTH, VOCAB),
                target_len=LENGTH + 1)
MODELS = [
    RecurrentSeq2Seq(VOCAB + 1, LENGTH + 1, hidden=12, embed=5),
    RecurrentSeq2Seq(VOCAB + 1, LENGTH + 1, cell="lstm", hidden=12, embed=5,
                     attention="additive"),
    RecurrentSeq2Seq(VOCAB + 1, LENGTH + 1, hidden=12, embed=5, attention="dot"),
    TransformerSeq2Seq(VOCAB + 1, LENGTH + 1, d_model=8, num_heads=2, num_layers=1, mlp_dim=16),
]


def batch(n=4, min_length=None, step=0):
    data = build_data(dict(name="translation", length=LENGTH, vocab=VOCAB, min_length=min_length),
                      seed=0)
    return data.train_batch(step, n)


# The Transformer's case is the longest: -m slow (CI time); the three recurrent ones stay.
@pytest.mark.parametrize("model", [
    *MODELS[:-1], pytest.param(MODELS[-1], marks=pytest.mark.slow)],
    ids=["gru", "lstm_additive", "gru_dot", "transformer"])
def test_greedy_decoding_equals_teacher_forcing_on_its_own_output(model):
    b = batch(min_length=2)
    x, mask = jnp.asarray(b["inputs"]), jnp.asarray(b["mask"])
    variables = model.init(jax.random.PRNGKey(1), x, mask=mask)
    greedy = model.apply(variables, x, mask=mask)
    assert greedy.shape == (4, LENGTH + 1, VOCAB + 1)
    # Fed its own argmax as the "true" previous tokens, teacher forcing reproduces every step.
    forced = model.apply(variables, x, mask=mask, targets=jnp.argmax(greedy, -1))
    np.testing.assert_allclose(forced, greedy, atol=1e-5)
    # Padded source steps are invisible: changing them changes nothing.
    noisy = jnp.where(mask[..., None], x, 7.0)
    np.testing.assert_allclose(model.apply(variables, noisy, mask=mask), greedy, atol=1e-5)


def test_translation_targets_and_determinism():
    for task, fn in (("reverse", lambda s: s[::-1]), ("sort", np.sort)):
        data = build_data(dict(name="translation", task=task, length=7, min_length=3, vocab=4),
                          seed=3)
        b = data.train_batch(5, 16)
        assert b["inputs"].tobytes() == data.train_batch(5, 16)["inputs"].tobytes()
        for i in range(16):
            n = int(b["mask"][i].sum())
            src = b["inputs"][i, :n].argmax(-1)
            np.testing.assert_array_equal(b["targets"][i, :n], fn(src))
            assert b["targets"][i, n] == 4  # the end token
            np.testing.assert_array_equal(b["target_weights"][i], np.arange(8) <= n)
            assert not b["inputs"][i, n:].any()


def test_exact_match_counts_only_weighted_tokens():
    targets = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
    pred = np.array([[1, 2, 3], [1, 2, 0], [1, 0, 0]])
    logits = jax.nn.one_hot(pred, 4) * 10
    tw = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], np.float32)
    spec = TaskSpec(kind="seq2seq", num_outputs=4, input_shape=(3, 4), target_len=3)
    _, m = loss_and_metrics(spec, logits, {"targets": jnp.asarray(targets),
                                           "target_weights": jnp.asarray(tw),
                                           "weights": jnp.ones(3)})
    assert float(m["exact_match"][0]) == 2 and float(m["exact_match"][1]) == 3
    np.testing.assert_allclose(float(m["accuracy"][0] / m["accuracy"][1]), 6 / 8)


def test_encoder_gradients_match_finite_differences():
    model = RecurrentSeq2Seq(VOCAB + 1, LENGTH + 1, hidden=6, embed=4, attention="additive")
    b = {k: jnp.asarray(v) for k, v in batch(n=2).items()}
    variables = model.init(jax.random.PRNGKey(2), b["inputs"])
    grads = encoder_state_gradients(model, variables, b, SPEC)
    assert grads.shape == (2, LENGTH, 6)
    from cnn_rnn.diagnostics.gradient_flow import summed_example_loss

    def loss(p):
        logits = model.apply(variables, b["inputs"], targets=b["targets"], perturbations=[p])
        return float(summed_example_loss(SPEC, logits, b)[0])

    direction = jnp.zeros((2, LENGTH, 6)).at[:, 1].set(
        jax.random.normal(jax.random.PRNGKey(3), (2, 6)))
    eps = 1e-2
    fd = (loss(eps * direction) - loss(-eps * direction)) / (2 * eps)
    np.testing.assert_allclose(fd, float(jnp.vdot(grads, direction)), rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize("kw, field", [
    (dict(length=0), "data.length"),
    (dict(length=5, min_length=6), "data.min_length"),
    (dict(vocab=1), "data.vocab"),
    (dict(vocab=5000), "data.vocab"),
    (dict(task="translate"), "data.task"),
])
def test_bad_task_values_are_config_errors(kw, field):
    with pytest.raises(ConfigError) as e:
        build_data(dict(name="translation", **kw), seed=0)
    assert e.value.field == field and "\n" not in str(e.value)


def test_model_and_task_mismatches_are_config_errors():
    with pytest.raises(ConfigError, match="decoder length target_len 6 exceeds max_len 4"):
        build_model(dict(name="seq2seq_rnn", max_len=4), SPEC)
    with pytest.raises(ConfigError, match="needs an encoder-decoder; accepted: seq2seq_rnn"):
        build_model(dict(name="gru"), SPEC)
    adding = build_data(dict(name="adding", length=5), seed=0).spec
    with pytest.raises(ConfigError, match="needs a sequence model"):
        build_model(dict(name="seq2seq_transformer"), adding)
    with pytest.raises(ConfigError, match="model.attention: must be one of none, additive, dot"):
        build_model(dict(name="seq2seq_rnn", attention="luong"), SPEC)


@pytest.mark.slow  # fast-suite time: docs/tests.md
def test_too_long_source_on_the_command_line_is_one_line(cli, tmp_path):
    r = cli("experiments.run", "--config=configs/seq2seq.py:model=none,budget=2000",
            "--config.data.length=600", f"--workdir={tmp_path / 'run'}", devices=1)
    assert r.returncode != 0
    assert "exceeds max_len 512" in r.stderr.strip().splitlines()[-1]
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_attention_learns_to_reverse(tmp_path):
    from cnn_rnn.training.loop import train_and_evaluate
    from configs.common import base_config

    cfg = base_config(model=dict(name="seq2seq_rnn", attention="additive", hidden=24, embed=8),
                      data=dict(name="translation", length=4, vocab=4, num_eval=64),
                      steps=200, batch_size=32, learning_rate=1e-2, optimizer="adam",
                      grad_clip_norm=1.0)
    cfg.progress = False
    summary = train_and_evaluate(cfg, str(tmp_path))
    assert summary["eval"]["exact_match"] > 0.5
    assert summary["eval"]["accuracy"] > 0.8


def _rows(none_long):
    rows = []
    for arch, acc in (("none", {5: 0.9, 20: none_long}), ("additive", {5: 1.0, 20: 0.95})):
        for length, em in acc.items():
            rows.append(dict(arch=arch, length=length, params=1000, train_seconds=1.0,
                             eval={"exact_match": em, "accuracy": em},
                             encoder_grad={"init": [1.0] * length,
                                           "final": list(np.geomspace(1e-3, 1.0, length))}))
    return rows


def test_report_states_whether_the_expected_ordering_holds(tmp_path):
    from cnn_rnn.diagnostics.seq2seq_ablation import write_report

    settings = dict(task="reverse", vocab=10, steps=5, batch_size=4, num_eval=8, budget=1000)
    text = open(write_report(_rows(0.1), str(tmp_path), command="cmd",
                             settings=settings)).read()
    assert "from 0.9 at length 5 to 0.1 at length 20: it decays with length, as expected" in text
    assert "0.95 at length 20, well above the no-attention model's 0.1" in text
    assert (tmp_path / "figures" / "exact_match_vs_length.png").stat().st_size > 0
    assert (tmp_path / "figures" / "encoder_gradients.png").stat().st_size > 0
    text = open(write_report(_rows(0.9), str(tmp_path), command="cmd",
                             settings=settings)).read()
    assert "NO clear decay" in text and "NOT clearly above" in text
