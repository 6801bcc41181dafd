"""Copy memory (Arjovsky et al. 2016; Bai et al. 2018 Table 2). Per-step cross-entropy; the
memoryless baseline is 10 ln 8 / (T + 20).

Arguments (`configs/copy.py:model=tcn,T=1000`): model, T (the delay), variant (`paper` | `cpu`),
steps (0 = the variant's default), clip (gradient clipping norm; 0 = none).
"""

from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN_PAPER = dict(levels=8, hidden=10, kernel_size=8, dropout=0.0)
TCN_CPU = dict(levels=6, hidden=10, kernel_size=6, dropout=0.0)


def get_config(arg=None):
    a = parse_arg(arg, dict(model="tcn", T=1000, variant="paper", steps=0, clip=1.0, seed=0))
    paper = a["variant"] == "paper"
    if a["variant"] not in ("paper", "cpu"):
        raise ValueError(f"config argument variant={a['variant']!r}; accepted: paper, cpu")
    model = model_config(a["model"], budget=16_000, input_dim=10, outputs=9,
                         tcn=TCN_PAPER if paper else TCN_CPU, many_to_many=True)
    steps = a["steps"] or (20_000 if paper else 2_000)
    tcn = a["model"] == "tcn"
    return base_config(model=model, data=dict(name="copy", length=a["T"]), steps=steps,
                       batch_size=32 if paper else 64,
                       learning_rate=5e-4 if tcn and paper else 2e-3,
                       optimizer="rmsprop" if tcn and paper else "adam",
                       grad_clip_norm=a["clip"], seed=a["seed"])
