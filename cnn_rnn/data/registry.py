"""Builds a data source from `config.data` (name + kwargs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnn_rnn.data.base import DataSource
from cnn_rnn.registry import Registry

# The modules that register the built-in sources (a new source module is added here).
SOURCE_MODULES = ("mnist1d", "synthetic", "tfds")
DATA: Registry[DataSource] = Registry("data", [f"cnn_rnn.data.{m}" for m in SOURCE_MODULES])
register_data = DATA.register


def build_data(data_config: Mapping[str, Any], seed: int) -> DataSource:
    """The data source named `data_config['name']`, given the remaining keys as kwargs."""
    kwargs = {k: v for k, v in dict(data_config).items() if k != "name"}
    return DATA.build(data_config.get("name", ""), kwargs, seed=seed)


def data_names() -> list[str]:
    """Every registered data source name."""
    return DATA.names()
