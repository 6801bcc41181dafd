"""Copy memory (Arjovsky et al. 2016; Bai et al. 2018 Table 2).

Per-step cross-entropy; the memoryless baseline is 10 ln 8 / (T + 20).

Arguments (`configs/copy.py:model=tcn,T=1000`): model, T (the delay), variant (`paper`: Bai et
al.'s protocol, configs/bai2018.py | `cpu`), steps (0 = the variant's default), clip (gradient
clipping norm; 0 = none; -1 = the variant's: none for the paper's TCN, 1.0 otherwise).
"""

import ml_collections

from configs import bai2018
from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN_CPU = dict(levels=6, hidden=10, kernel_size=6, dropout=0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The copy-memory config: `model` at delay `T`, the paper's protocol or `cpu`."""
    a = parse_arg(arg, dict(model="tcn", T=1000, variant="paper", steps=0, clip=-1.0, seed=0))
    paper = a["variant"] == "paper"
    if a["variant"] not in ("paper", "cpu"):
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: paper, cpu")
    protocol = bai2018.TASKS["copy"]
    # The paper's code feeds each token as one number and repeats the delimiter.
    data = dict(name="copy", length=a["T"], **(protocol["data"] if paper else {}))
    model = model_config(a["model"], budget=protocol["budget"],
                         input_dim=1 if paper else 10, outputs=9,
                         tcn=protocol["tcn"] if paper else TCN_CPU, many_to_many=True)
    steps = a["steps"] or (bai2018.paper_steps("copy") if paper else 2_000)
    c = base_config(model=model, data=data, steps=steps,
                    batch_size=protocol["batch_size"] if paper else 64, learning_rate=2e-3,
                    optimizer="adam", grad_clip_norm=1.0, seed=a["seed"])
    if paper:
        c.optimizer.update(bai2018.optimizer_settings("copy", a["model"]))
    if a["clip"] >= 0:
        c.optimizer.grad_clip_norm = a["clip"]
    return c
