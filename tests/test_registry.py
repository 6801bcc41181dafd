"""Registries: a lookup finds every built-in entry whatever was imported, and one registration adds
an entry that builds like the built-ins."""

import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_rnn.errors import ConfigError
from cnn_rnn.models.registry import build_model, model_names, register_model
from cnn_rnn.task import TaskSpec

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter that imports only the registries, registers a model of its own first, and
# looks up built-in entries without calling model_names()/data_names() before.
FRESH = """
import sys
from cnn_rnn.data.registry import DATA, build_data
from cnn_rnn.models.registry import MODELS, register_model

register_model("mine")(lambda num_outputs: None)
assert not any(m.startswith("cnn_rnn.models.") and m != "cnn_rnn.models.registry"
               for m in sys.modules), "the test must start with no family module imported"
assert callable(MODELS.get("gru")) and callable(DATA.get("mnist"))
assert {"mine", "gru", "lstm", "cnn1d", "tcn", "transformer", "lru"} <= set(MODELS.names())
assert build_data({"name": "adding", "length": 5}, seed=0).spec.input_shape == (5, 2)
print("OK")
"""


def test_lookups_do_not_depend_on_imports():
    proc = subprocess.run([sys.executable, "-c", FRESH], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OK"]


def test_a_registry_imports_its_modules_on_first_lookup(tmp_path, monkeypatch):
    (tmp_path / "toy_registry.py").write_text(textwrap.dedent("""
        from cnn_rnn.registry import Registry
        TOYS = Registry("toy", ["toy_entries"])
    """))
    (tmp_path / "toy_entries.py").write_text(textwrap.dedent("""
        from toy_registry import TOYS

        @TOYS.register("double")
        def double(x: int = 1):
            return 2 * x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_registry

    assert "toy_entries" not in sys.modules
    assert toy_registry.TOYS.build("double", {"x": 3}) == 6
    assert toy_registry.TOYS.names() == ["double"]
    with pytest.raises(ConfigError, match="accepted: double"):
        toy_registry.TOYS.get("triple")
    for name in ("toy_registry", "toy_entries"):
        sys.modules.pop(name)


class MeanReadout(nn.Module):
    """Mean over time, then a dense layer: the smallest model the registry can build."""

    num_outputs: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, inputs, train=False, mask=None):
        return nn.Dense(self.num_outputs)(self.scale * inputs.mean(axis=1))


def test_one_registration_adds_a_model():
    if "test_mean_readout" not in model_names():
        register_model("test_mean_readout")(MeanReadout)
    assert {"test_mean_readout", "gru"} <= set(model_names())
    spec = TaskSpec(kind="classification", num_outputs=3, input_shape=(7, 2))
    model = build_model({"name": "test_mean_readout", "scale": 2.0}, spec)
    assert isinstance(model, MeanReadout) and model.num_outputs == 3 and model.scale == 2.0
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7, 2)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    dense = variables["params"]["Dense_0"]
    expected = 2.0 * np.asarray(x).mean(axis=1) @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="model.width"):
        build_model({"name": "test_mean_readout", "width": 2}, spec)
