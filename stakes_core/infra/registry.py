"""A tiny name → factory registry, shared by datasets, models, encoders, methods, figures and
dashboard pages.

Modelled on open_clip's ``list_models``/``create_model``: every pluggable part of the
library is looked up by a string name, and users can add their own entries from outside
the package with :meth:`Registry.register`, typically from a plugin
(:mod:`stakes_core.infra.plugins`). Asking any registry for a name or its list first loads
the plugins named by ``STAKES_PLUGINS`` and the ``stakes.plugins`` entry points (once per
process), so their entries are there wherever the lookup comes from.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar, overload

from stakes_core.infra.errors import StakesError
from stakes_core.infra.plugins import load_configured_plugins, scratch_plugin_state

T = TypeVar("T")

_REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()


class UnknownNameError(StakesError, KeyError):
    """Raised when a registry is asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories of one kind of object (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        _REGISTRIES.add(self)

    @overload
    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T: ...

    @overload
    def register(self, name: str, entry: None = None, *, overwrite: bool = False) -> Callable[[T], T]: ...

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False) -> T | Callable[[T], T]:
        """Register ``entry`` under ``name``; usable directly or as a decorator."""

        def add(obj: T) -> T:
            if not overwrite and name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise :class:`UnknownNameError` listing the choices."""
        load_configured_plugins()
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} '{name}' (choose from: {choices})") from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        load_configured_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_configured_plugins()
        return name in self._entries


@contextmanager
def scratch_registries() -> Iterator[None]:
    """Undo, on exit, everything registered inside and forget the plugins loaded inside, so that
    the next load registers them afresh (what a plugin's tests need to stay independent of each
    other). Inside, ``STAKES_PLUGINS`` and the entry points are read again at the next lookup."""
    saved = {registry: dict(registry._entries) for registry in _REGISTRIES}
    with scratch_plugin_state():
        try:
            yield
        finally:
            for registry, entries in saved.items():
                registry._entries.clear()
                registry._entries.update(entries)
