"""Name -> builder tables: each option of a kind (data set, model, objective, optimizer, schedule) is chosen in one place.

A kind's options are one `Registry`: `@REGISTRY.register("name", schema=Schema)` adds a builder with
the dataclass that types its keys (a subclass of the group's base in vae/schema.py, whose classmethod
`check(get)` holds its range checks), `REGISTRY.get(name)` returns the builder or refuses the name with
a `vae.errors.ConfigError` that names the config key, the bad value and the registered choices, and
`REGISTRY.names()` lists the choices in the order they were registered. An option whose checks are not
a schema's (a schedule) passes `check=`. vae/config.py derives everything else from these tables:
Hydra's schema store (`schema/<group>/<name>`), validation (`REGISTRY.check(name, get)`), the choices in
its messages and `--help`; so an option added here (or by a test, or an extension, at run time) is
accepted with no other edit, and the choices listed are always the ones that can be built.

Why registries and not Hydra's `_target_` instantiation: the config keeps the short option names
(`model.name=conv`, `optim.name=adam`, `data.name=mnist`) that run directories, checkpoints, sweeps
and the command line already use. A `_target_` would put an import path (`vae.model.conv_vae`) into
every saved `.hydra/config.yaml`, so moving or renaming a function would break resuming, evaluating
and exporting old runs, and runs saved before the change would have no `_target_` at all. A name is
resolved here, in the code that is running, and old configs keep meaning what they meant.

The table is a mapping (`name in REGISTRY`, iteration in registration order, `REGISTRY[name] = builder`),
so `monkeypatch.setitem(REGISTRY, name, builder)` adds an option for one test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar

from vae.errors import ConfigError

Builder = TypeVar("Builder", bound=Callable[..., Any])
_RAISE = object()


class Registry(MutableMapping[str, Callable[..., Any]]):
    """The builders of one kind of option, by the name the config's `key` (e.g. `optim.name`) gives."""

    def __init__(self, key: str):
        self.key = key
        self._builders: dict[str, Callable[..., Any]] = {}
        self._schemas: dict[str, type] = {}
        self._checks: dict[str, Callable[[Callable[[str], Any]], None]] = {}

    def register(
        self, name: str, *, schema: type | None = None, check: Callable[[Callable[[str], Any]], None] | None = None
    ) -> Callable[[Builder], Builder]:
        """A decorator adding `name` -> the decorated builder, with its schema (a dataclass with a
        `check(get)` classmethod) and/or its own `check(get)`; a name already registered is refused."""

        def add(builder: Builder) -> Builder:
            if name in self._builders:
                raise ValueError(f"{self.key}: {name!r} is already registered")
            self._builders[name] = builder
            if schema is not None:
                self._schemas[name] = schema
            if check is not None:
                self._checks[name] = check
            return builder

        return add

    def schema(self, name: str) -> type | None:
        """The dataclass `name` was registered with (None for an option without keys of its own)."""
        return self._schemas.get(name)

    def check(self, name: str, get: Callable[[str], Any]) -> None:
        """Refuse `name` (ConfigError) if it is not registered, then run its schema's and its own checks."""
        self.get(name)
        schema = self._schemas.get(name)
        if schema is not None and hasattr(schema, "check"):
            schema.check(get)
        if name in self._checks:
            self._checks[name](get)

    def get(self, name: str, default: Any = _RAISE) -> Callable[..., Any]:
        """The builder registered as `name`; an unknown name raises ConfigError (or returns `default`, if given)."""
        if name in self._builders:
            return self._builders[name]
        if default is not _RAISE:
            return default
        raise ConfigError(f"{self.key} must be one of {', '.join(self._builders)} (got {name!r})")

    def names(self) -> tuple[str, ...]:
        """The registered names, in the order they were registered."""
        return tuple(self._builders)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._builders[name]

    def __setitem__(self, name: str, builder: Callable[..., Any]) -> None:
        self._builders[name] = builder

    def __delitem__(self, name: str) -> None:
        del self._builders[name]
        self._schemas.pop(name, None)
        self._checks.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def __repr__(self) -> str:
        return f"Registry({self.key!r}: {', '.join(self._builders)})"
