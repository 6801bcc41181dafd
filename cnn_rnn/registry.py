"""A name -> constructor table that validates keyword arguments before building.

Models and data sources are both chosen by `config.<section>.name` plus keyword arguments; one
registry type serves both so that an unknown name or a kwarg the constructor does not take gives
the same one-line error everywhere. A registry names the modules that define its built-in entries
and imports them on its first lookup, so a lookup never depends on what the caller has imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from cnn_rnn.errors import ConfigError

T = TypeVar("T")
SIMPLE_TYPES = (bool, int, float, str)


def accepted_kwargs(fn: Callable[..., Any]) -> list[str]:
    """Names a constructor accepts as keywords (dataclass fields for linen modules)."""
    if dataclasses.is_dataclass(fn):
        # A class's own fields first, then keyword-only ones inherited from an options base.
        fields = sorted(dataclasses.fields(fn), key=lambda f: f.kw_only is True)
        return [f.name for f in fields if f.init and f.name not in ("parent", "name")]
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def kwarg_types(fn: Callable[..., Any]) -> dict[str, type]:
    """The type of each keyword `fn` accepts whose annotation is one of SIMPLE_TYPES (or None).

    Keywords annotated otherwise (tuples, unions of two types, none) are left out.
    """
    is_function = dataclasses.is_dataclass(fn) or not inspect.isclass(fn)
    try:
        hints = typing.get_type_hints(fn if is_function else fn.__init__)
    except (NameError, TypeError):
        hints = {}
    out = {}
    for name in accepted_kwargs(fn):
        hint = hints.get(name)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        if len(options) == 1 and options[0] in SIMPLE_TYPES:
            out[name] = options[0]
    return out


class Registry(Generic[T]):
    """Maps names to constructors; `build` checks the name and every kwarg first.

    Args:
      section: the config section it builds from ("model", "data"), used in error messages.
      modules: the modules whose `@register` decorators define the built-in entries; every
        lookup (`get`, `names`, `check_kwargs`, `build`) imports them first.
    """

    def __init__(self, section: str, modules: Sequence[str] = ()):
        self.section = section
        self.modules = tuple(modules)
        self._table: dict[str, Callable[..., T]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        # Set first: the modules being imported register into this table (never look it up).
        self._loaded = True
        try:
            for module in self.modules:
                importlib.import_module(module)
        except BaseException:
            self._loaded = False
            raise

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
        self._load()
        return sorted(self._table)

    def get(self, name: str) -> Callable[..., T]:
        """The constructor for `name`, or a ConfigError listing the accepted names."""
        self._load()
        if name not in self._table:
            raise ConfigError(
                f"{self.section}.name", f"unknown {name!r}; accepted: {', '.join(self.names())}"
            )
        return self._table[name]

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any],
                     reserved: tuple[str, ...] = ()) -> None:
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
