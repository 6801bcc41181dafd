"""Adding problem (Hochreiter 1997; Bai et al. 2018 Table 2). MSE; predicting 1 scores 1/6.

Arguments (`configs/adding.py:model=lstm,T=600`): model (see configs/presets.MODELS), T (sequence
length), placement (`anywhere` as in Bai et al., `halves` as in Arjovsky et al.), variant (`paper`:
the full-scale run for GPU/TPU; `cpu`: sized to finish in minutes on a laptop CPU), steps (0 keeps
the variant's default), clip (gradient clipping norm; 0 = none).
"""

from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN_PAPER = dict(levels=8, hidden=30, kernel_size=7, dropout=0.0)
TCN_CPU = dict(levels=6, hidden=24, kernel_size=4, dropout=0.0)


def get_config(arg=None):
    a = parse_arg(arg, dict(model="lstm", T=600, placement="anywhere", variant="paper", steps=0,
                            clip=1.0, seed=0))
    paper = a["variant"] == "paper"
    if a["variant"] not in ("paper", "cpu"):
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: paper, cpu")
    model = model_config(a["model"], budget=70_000 if paper else 20_000, input_dim=2, outputs=1,
                         tcn=TCN_PAPER if paper else TCN_CPU)
    steps = a["steps"] or (20_000 if paper else 2_000)
    lr = 2e-3 if a["model"] != "tcn" else 4e-3
    return base_config(model=model, data=dict(name="adding", length=a["T"],
                                              placement=a["placement"]),
                       steps=steps, batch_size=32 if paper else 64, learning_rate=lr,
                       optimizer="adam", grad_clip_norm=a["clip"], seed=a["seed"])
