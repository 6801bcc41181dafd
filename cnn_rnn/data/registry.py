"""Builds a data source from `config.data` (name + kwargs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnn_rnn.data.base import DataSource
from cnn_rnn.registry import Registry

DATA: Registry[DataSource] = Registry("data")
register_data = DATA.register


def _import_sources() -> None:
    # Importing the modules runs their @register_data decorators.
    import importlib

    for module in ("mnist1d", "synthetic", "tfds"):
        try:
            importlib.import_module(f"cnn_rnn.data.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"cnn_rnn.data.{module}":
                raise


def build_data(data_config: Mapping[str, Any], seed: int) -> DataSource:
    """The data source named `data_config['name']`, given the remaining keys as kwargs."""
    _import_sources()
    kwargs = {k: v for k, v in dict(data_config).items() if k != "name"}
    return DATA.build(data_config.get("name", ""), kwargs, seed=seed)


def data_names() -> list[str]:
    """Every registered data source name."""
    _import_sources()
    return DATA.names()
