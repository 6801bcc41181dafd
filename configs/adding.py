"""Adding problem (Hochreiter 1997; Bai et al. 2018 Table 2). MSE; predicting 1 scores 1/6.

Arguments (`configs/adding.py:model=lstm,T=600`): model (see configs/presets.MODELS), T (sequence
length), placement (`anywhere` as in Bai et al., `halves` as in Arjovsky et al.), variant (`paper`:
Bai et al.'s protocol, configs/bai2018.py and docs/paper_protocol.md; `cpu`: sized to finish in
minutes on a laptop CPU), steps (0 keeps the variant's default), clip (gradient clipping norm;
0 = none; -1 = the variant's: none for the paper's TCN, 1.0 otherwise).
"""

import ml_collections

from configs import bai2018
from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN_CPU = dict(levels=6, hidden=24, kernel_size=4, dropout=0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The adding-problem config: `model` at length `T`, the paper's protocol or `cpu`."""
    a = parse_arg(arg, dict(model="lstm", T=600, placement="anywhere", variant="paper", steps=0,
                            clip=-1.0, seed=0))
    paper = a["variant"] == "paper"
    if a["variant"] not in ("paper", "cpu"):
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: paper, cpu")
    protocol = bai2018.TASKS["adding"]
    model = model_config(a["model"], budget=protocol["budget"] if paper else 20_000, input_dim=2,
                         outputs=1, tcn=protocol["tcn"] if paper else TCN_CPU)
    steps = a["steps"] or (bai2018.paper_steps("adding") if paper else 2_000)
    lr = 2e-3 if a["model"] != "tcn" else 4e-3
    c = base_config(model=model, data=dict(name="adding", length=a["T"],
                                           placement=a["placement"]),
                    steps=steps, batch_size=protocol["batch_size"] if paper else 64,
                    learning_rate=lr, optimizer="adam", grad_clip_norm=1.0, seed=a["seed"])
    if paper:
        c.optimizer.update(bai2018.optimizer_settings("adding", a["model"]))
    if a["clip"] >= 0:
        c.optimizer.grad_clip_norm = a["clip"]
    return c
