"""Builds a data source from `config.data` (name + kwargs).

A config lists every keyword a source takes with its default (`Registry.fields`), so the command
line can set any of them; a kwarg set to None takes the source's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnn_rnn.data.base import DataSource
from cnn_rnn.registry import Keyword, Registry

# The modules that register the built-in sources (a new source module is added here).
SOURCE_MODULES = ("mnist1d", "synthetic", "tfds", "arrays", "timeseries", "translation",
                  "audio", "spoken_digit")
# `seed` comes from the run's seed, never from config.data.
DATA: Registry[DataSource] = Registry("data", [f"cnn_rnn.data.{m}" for m in SOURCE_MODULES],
                                      reserved=("seed",))
register_data = DATA.register


def build_data(data_config: Mapping[str, Any], seed: int) -> DataSource:
    """The data source named `data_config['name']`, given the other keys (but None) as kwargs."""
    kwargs = {k: v for k, v in dict(data_config).items() if k != "name" and v is not None}
    return DATA.build(data_config.get("name", ""), kwargs, seed=seed)


def data_names() -> list[str]:
    """Every registered data source name."""
    return DATA.names()


def data_fields(name: str) -> dict[str, Keyword]:
    """The keyword arguments of source `name` that a config can set (all but `seed`)."""
    return DATA.fields(name)
