"""Images read pixel by pixel: sequential / permuted MNIST and sequential CIFAR-10.

As in Bai et al. 2018 Table 2 and Le et al. 2015, plus the offline `digits` stand-in that needs
no download.

Arguments (`configs/pixels.py:model=gru,dataset=mnist,order=permuted`): model, dataset (`mnist`,
`fashion_mnist`, `cifar10` through tfds, or `digits`: procedural 28x28 digits, no download),
order (`sequential` | `permuted`), variant (`paper`: Bai et al.'s protocol, configs/bai2018.py:
20 epochs of batch 64, lr / 10 after 10 | `cpu`), steps (0 = default), clip (-1 = the variant's:
none for the paper's TCN, 1.0 otherwise), data_dir.
"""

import ml_collections

from configs import bai2018
from configs.common import base_config, parse_arg
from configs.presets import model_config

TCN_CPU = dict(levels=6, hidden=16, kernel_size=5, dropout=0.0)
DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The pixel-by-pixel config: `model` reading `dataset` in `order`, the paper's or `cpu`."""
    a = parse_arg(arg, dict(model="gru", dataset="mnist", order="sequential", variant="paper",
                            steps=0, clip=-1.0, seed=0, data_dir=None))
    if a["dataset"] not in DATASETS:
        raise ValueError(f"config argument dataset={a['dataset']!r}; accepted: "
                         f"{', '.join(DATASETS)}")
    if a["order"] not in ("sequential", "permuted"):
        raise ValueError(f"config argument order={a['order']!r}; accepted: sequential, permuted")
    paper = a["variant"] == "paper"
    channels = 3 if a["dataset"] == "cifar10" else 1
    protocol = bai2018.TASKS["mnist"]
    model = model_config(a["model"], budget=protocol["budget"] if paper else 20_000,
                         input_dim=channels, outputs=10,
                         tcn=protocol["tcn"] if paper else TCN_CPU)
    data = dict(name=a["dataset"], pixels=a["order"])
    if a["dataset"] == "digits":
        data.update(size=28 if paper else 14)
    else:
        data.update(data_dir=a["data_dir"])
    steps = a["steps"] or (bai2018.paper_steps("mnist") if paper else 1_000)
    c = base_config(model=model, data=data, steps=steps, batch_size=protocol["batch_size"],
                    learning_rate=2e-3, optimizer="adam", grad_clip_norm=1.0, seed=a["seed"])
    if paper:
        c.optimizer.update(bai2018.optimizer_settings("mnist", a["model"]))
    if a["clip"] >= 0:
        c.optimizer.grad_clip_norm = a["clip"]
    return c
