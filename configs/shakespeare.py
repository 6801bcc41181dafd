"""Character-level language model on tiny_shakespeare (many-to-many).

It reports bits per character as `bits_per_step`.

Arguments (`configs/shakespeare.py:model=gru,seq_len=256`): model (many-to-many capable: rnn,
irnn, lstm, gru, tcn, transformer (causal), lru, mingru), seq_len, steps, seed, data_dir.
"""

import ml_collections

from configs.common import base_config, parse_arg
from configs.presets import model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The character-level language-model config: `model` on tiny_shakespeare."""
    a = parse_arg(arg, dict(model="gru", seq_len=256, steps=5000, seed=0, data_dir=None))
    model = model_config(a["model"], budget=300_000, input_dim=256, outputs=256,
                         tcn=dict(levels=6, hidden=128, kernel_size=3, dropout=0.1),
                         many_to_many=True)
    data = dict(name="tiny_shakespeare", seq_len=a["seq_len"], data_dir=a["data_dir"])
    return base_config(model=model, data=data, steps=a["steps"], batch_size=32,
                       learning_rate=2e-3, grad_clip_norm=1.0, seed=a["seed"])
