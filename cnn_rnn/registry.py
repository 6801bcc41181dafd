"""A name -> constructor table that validates keyword arguments before building.

Models and data sources are both chosen by `config.<section>.name` plus keyword arguments; one
registry type serves both so that an unknown name or a kwarg the constructor does not take gives
the same one-line error everywhere. A registry names the modules that define its built-in entries
and imports them on its first lookup, so a lookup never depends on what the caller has imported.
"""

from __future__ import annotations

import collections.abc
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
SEQUENCE_ORIGINS = (tuple, list, collections.abc.Sequence)


@dataclasses.dataclass(frozen=True)
class Keyword:
    """One keyword a constructor takes, as a config field.

    Attributes:
      kind: the field's type on the command line: one of SIMPLE_TYPES, `tuple` for a sequence
        (`--config.model.features="(16, 32)"`), or `object` for a union such as `bool | str`
        (the value is read as a Python literal, else as a string).
      default: the constructor's default; None when it is None or there is none.
    """

    kind: type
    default: Any


def accepted_kwargs(fn: Callable[..., Any]) -> list[str]:
    """Names a constructor accepts as keywords (dataclass fields for linen modules)."""
    if dataclasses.is_dataclass(fn):
        # A class's own fields first, then keyword-only ones inherited from an options base.
        fields = sorted(dataclasses.fields(fn), key=lambda f: f.kw_only is True)
        return [f.name for f in fields if f.init and f.name not in ("parent", "name")]
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of `fn`'s keywords ({} if they do not resolve)."""
    is_function = dataclasses.is_dataclass(fn) or not inspect.isclass(fn)
    try:
        return typing.get_type_hints(fn if is_function else fn.__init__)
    except (NameError, TypeError):
        return {}


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The default of each keyword `fn` accepts (None where there is none)."""
    if dataclasses.is_dataclass(fn):
        out = {}
        for f in dataclasses.fields(fn):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty}


def _kind(hint: Any, default: Any) -> type:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    if len(options) > 1:
        return object
    (option,) = options
    if option in SIMPLE_TYPES:
        return option
    if option in SEQUENCE_ORIGINS or typing.get_origin(option) in SEQUENCE_ORIGINS:
        return tuple
    if type(default) in (*SIMPLE_TYPES, tuple):  # `Any` or an unresolved annotation
        return type(default)
    return object


def keywords(fn: Callable[..., Any], reserved: Sequence[str] = ()) -> dict[str, Keyword]:
    """Every keyword `fn` accepts (but `reserved`) with its config type and default."""
    hints, defaults = _hints(fn), _defaults(fn)
    out = {}
    for name in accepted_kwargs(fn):
        if name in reserved:
            continue
        default = defaults.get(name)
        out[name] = Keyword(_kind(hints.get(name, Any), default), default)
    return out


def complete_section(section: Mapping[str, Any], fields: Mapping[str, Keyword]) -> dict[str, Any]:
    """`section` with every field of `fields` it lacks (or holds as None) at its default."""
    out = dict(section)
    for key, keyword in fields.items():
        if out.get(key) is None:
            out[key] = keyword.default
    return out


class Registry(Generic[T]):
    """Maps names to constructors; `build` checks the name and every kwarg first.

    Args:
      section: the config section it builds from ("model", "data"), used in error messages.
      modules: the modules whose `@register` decorators define the built-in entries; every
        lookup (`get`, `names`, `check_kwargs`, `build`) imports them first.
      reserved: keywords the builder sets itself (never config fields), e.g. `num_outputs`.
    """

    def __init__(self, section: str, modules: Sequence[str] = (), reserved: Sequence[str] = ()):
        self.section = section
        self.modules = tuple(modules)
        self.reserved = tuple(reserved)
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

    def fields(self, name: str) -> dict[str, Keyword]:
        """The config fields of `name`: every keyword but the reserved ones, with defaults."""
        return keywords(self.get(name), self.reserved)

    def complete(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """A config section with every field of its `name` filled in (None -> the default).

        A name that is not registered is returned as it is (building it will say why).
        """
        name = section.get("name")
        if not isinstance(name, str) or name not in self.names():
            return dict(section)
        return complete_section(section, self.fields(name))

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
