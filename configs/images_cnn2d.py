"""2-D ConvNet (3 x [conv3x3 -> BN -> ReLU -> max-pool 2x2], dense head) on image classification.

Arguments (`configs/images_cnn2d.py:dataset=fashion_mnist,steps=2000`): dataset (`mnist`,
`fashion_mnist`, `cifar10` through tfds, prepared once with TensorFlow; or `digits`, procedural
28x28 digits that need no download), steps, seed, data_dir.
"""

from typing import Any

import ml_collections

from configs.common import base_config, parse_arg

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")


def image_data(dataset: str, data_dir: str | None) -> dict[str, Any]:
    """`config.data` for an image dataset as [H, W, C] images (shared with images_resnet.py)."""
    if dataset not in DATASETS:
        raise ValueError(f"config argument dataset={dataset!r}; accepted: {', '.join(DATASETS)}")
    if dataset == "digits":
        return dict(name="digits", size=28)
    return dict(name=dataset, data_dir=data_dir)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The 2-D ConvNet config on `dataset` (tfds, or the offline `digits`)."""
    a = parse_arg(arg, dict(dataset="mnist", steps=3000, seed=0, data_dir=None))
    return base_config(
        model=dict(name="cnn2d", features=(32, 64, 64), kernel_size=3, pool=2, batch_norm=True,
                   head="flatten", hidden=128, dropout=0.1),
        data=image_data(a["dataset"], a["data_dir"]),
        steps=a["steps"], batch_size=128, learning_rate=2e-3, schedule="cosine",
        weight_decay=1e-4, seed=a["seed"])
