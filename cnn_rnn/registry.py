"""A name -> constructor table that validates keyword arguments before building.

Models and data sources are both chosen by `config.<section>.name` plus keyword arguments; one
registry type serves both so that an unknown name or a kwarg the constructor does not take gives
the same one-line error everywhere.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from cnn_rnn.errors import ConfigError

T = TypeVar("T")


def accepted_kwargs(fn: Callable[..., Any]) -> list[str]:
    """Names a constructor accepts as keywords (dataclass fields for linen modules)."""
    if dataclasses.is_dataclass(fn):
        return [f.name for f in dataclasses.fields(fn)
                if f.init and f.name not in ("parent", "name")]
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class Registry(Generic[T]):
    """Maps names to constructors; `build` checks the name and every kwarg first."""

    def __init__(self, section: str):
        self.section = section
        self._table: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a constructor under `name`."""

        def wrap(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._table:
                raise ValueError(f"{self.section}.name {name!r} registered twice")
            self._table[name] = fn
            return fn

        return wrap

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._table)

    def get(self, name: str) -> Callable[..., T]:
        """The constructor for `name`, or a ConfigError listing the accepted names."""
        if name not in self._table:
            raise ConfigError(
                f"{self.section}.name", f"unknown {name!r}; accepted: {', '.join(self.names())}"
            )
        return self._table[name]

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any], reserved: tuple[str, ...] = ()):
        """Raise ConfigError for a kwarg that `name` does not take (reserved ones are ours)."""
        ctor = self.get(name)
        accepted = [k for k in accepted_kwargs(ctor) if k not in reserved]
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(
                    f"{self.section}.{key}",
                    f"{self.section} {name!r} takes no argument {key!r}; "
                    f"accepted: {', '.join(accepted) or '(none)'}",
                )

    def build(self, name: str, kwargs: Mapping[str, Any], **fixed: Any) -> T:
        """Build `name` from user kwargs plus fixed ones that the caller supplies."""
        self.check_kwargs(name, kwargs, reserved=tuple(fixed))
        ctor = self.get(name)
        try:
            return ctor(**dict(kwargs), **fixed)
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{self.section}", f"{name!r}: {e}") from e
