"""CIFAR ResNet (He et al. 2016: depth 6n+2, basic blocks, BN, global average pool).

Paper: ResNet-20 reaches 91.25% on CIFAR-10 with SGD 0.1, momentum 0.9, weight decay 1e-4,
64K steps of batch 128 and flip/crop augmentation (not done here, so expect a few % less).
Arguments (`configs/images_resnet.py:depth=8,dataset=digits`): depth (8, 14, 20, ...), width,
shortcut (`projection` | `identity`), dataset (see images_cnn2d.py), steps, seed, data_dir.
"""

import ml_collections

from configs.common import base_config, parse_arg
from configs.images_cnn2d import image_data


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The CIFAR ResNet config: `depth` and `width` on `dataset`, SGD with a cosine schedule."""
    a = parse_arg(arg, dict(dataset="cifar10", depth=20, width=16, shortcut="identity",
                            steps=64_000, seed=0, data_dir=None))
    return base_config(
        model=dict(name="resnet", depth=a["depth"], width=a["width"], shortcut=a["shortcut"]),
        data=image_data(a["dataset"], a["data_dir"]),
        steps=a["steps"], batch_size=128, learning_rate=0.1, optimizer="sgd", schedule="cosine",
        warmup_steps=min(1000, a["steps"] // 20), seed=a["seed"])
