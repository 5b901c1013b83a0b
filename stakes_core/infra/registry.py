"""A tiny name → factory registry, shared by datasets, models, encoders and methods.

Modelled on open_clip's ``list_models``/``create_model``: every pluggable part of the
library is looked up by a string name, and users can add their own entries from outside
the package with :meth:`Registry.register`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories of one kind of object (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False):
        """Register ``entry`` under ``name``; usable directly or as a decorator."""

        def add(obj: T) -> T:
            if not overwrite and name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise :class:`UnknownNameError` listing the choices."""
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} '{name}' (choose from: {choices})") from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

