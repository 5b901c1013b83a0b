"""User plugins: Python modules or files that register methods, datasets, encoders, models,
figures or dashboard pages from outside the package.

A plugin is an ordinary module whose import registers things (``@register_method`` and the
like). It is named by a *spec*: an importable module name (``mylab.relabel``) or the path of a
``.py`` file (``relabel.py``). Three places name plugins:

- ``stakes --plugin SPEC`` on the command line (loaded before the command runs);
- the ``STAKES_PLUGINS`` environment variable, specs separated by ``os.pathsep``;
- the ``stakes.plugins`` entry-point group of installed distributions (the entry point's value
  names the module to import; an ``:object`` part is not used).

The last two are loaded once per process, lazily: the first time any registry is asked for a
name or its list (:class:`~stakes_core.infra.registry.Registry` calls
:func:`load_configured_plugins`), so the command line, the dashboard, notebooks and plain
Python all see the same registries without calling anything. A spec is loaded at most once
per process however many places name it. A spec that does not exist is the user's to fix
(:class:`PluginNotFoundError`, one line); an exception raised by the plugin's own code is a
bug in it and propagates with its traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterable, Iterator

from stakes_core.infra.errors import StakesError

PLUGINS_ENV = "STAKES_PLUGINS"
"""The environment variable holding plugin specs, separated by ``os.pathsep``."""

ENTRY_POINT_GROUP = "stakes.plugins"
"""The entry-point group an installed distribution uses to name its plugin module."""


class PluginNotFoundError(StakesError):
    """A plugin spec names no importable module and no existing ``.py`` file."""


_lock = threading.RLock()
_loaded: dict[str, ModuleType] = {}  # resolved spec (module name or absolute file path) → module
_configured = False  # STAKES_PLUGINS and the entry points have been loaded
_configuring = False  # they are being loaded (by the thread holding _lock)


def _is_file_spec(spec: str) -> bool:
    """True when ``spec`` names a file (it ends in ``.py`` or contains a path separator)."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_plugins(specs: Iterable[str], source: str = "load_plugins") -> list[ModuleType]:
    """Import every plugin of ``specs`` that is not loaded yet and return the modules, in order.

    ``source`` says where the specs came from (``--plugin``, ``STAKES_PLUGINS``, …); it appears
    in the message of the :class:`PluginNotFoundError` raised for a spec that does not exist.
    """
    with _lock:
        return [_load(spec.strip(), source) for spec in specs if spec.strip()]


def loaded_plugins() -> list[str]:
    """The resolved specs loaded so far (module names, absolute file paths), in loading order."""
    return list(_loaded)


def configured_plugin_specs() -> list[tuple[str, str]]:
    """``(spec, source)`` of every plugin named by ``STAKES_PLUGINS`` and the entry points."""
    found = [(spec, PLUGINS_ENV) for spec in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if spec.strip()]
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = getattr(entry_point.dist, "name", None)
        origin = f" of {distribution}" if distribution else ""
        found.append((entry_point.module, f"entry point '{entry_point.name}'{origin} (group {ENTRY_POINT_GROUP})"))
    return found


def load_configured_plugins() -> None:
    """Load the ``STAKES_PLUGINS`` and entry-point plugins, once per process.

    Called by every registry lookup. While the plugins load, lookups from the loading thread
    (a plugin that imports ``stakes_core.methods`` or lists a registry) return at once and see
    the registries as far as they are filled; other threads wait until loading is done. A
    plugin that raises is not tried again by later lookups: its traceback was shown once.
    """
    global _configured, _configuring
    if _configured:
        return
    with _lock:  # re-entrant: only the loading thread itself can get in while _configuring
        if _configured or _configuring:
            return
        _configuring = True
        try:
            for spec, source in configured_plugin_specs():
                load_plugins([spec], source)
        finally:
            _configuring = False
            _configured = True


@contextmanager
def scratch_plugin_state() -> Iterator[None]:
    """Inside, the configured plugins are read again at the next lookup; on exit, every plugin
    loaded inside counts as not loaded and leaves ``sys.modules``, so loading it again runs it
    again (see :func:`~stakes_core.infra.registry.scratch_registries`, which also undoes what
    it registered)."""
    global _configured
    with _lock:
        saved, configured = dict(_loaded), _configured
        _configured = False
    try:
        yield
    finally:
        with _lock:
            for key in set(_loaded) - set(saved):
                sys.modules.pop(_loaded[key].__name__, None)
            _loaded.clear()
            _loaded.update(saved)
            _configured = configured


def _load(spec: str, source: str) -> ModuleType:
    if _is_file_spec(spec):
        path = Path(spec).expanduser().resolve()
        key = str(path)
        if key not in _loaded:
            _loaded[key] = _import_file(path, spec, source)
        return _loaded[key]
    if spec not in _loaded:
        _loaded[spec] = _import_module(spec, source)
    return _loaded[spec]


def _import_module(name: str, source: str) -> ModuleType:
    """Import module ``name``; only a module that cannot be found is a :class:`PluginNotFoundError`."""
    try:
        found = importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):  # a missing parent package, or an invalid name
        found = None
    if found is None:
        raise PluginNotFoundError(
            f"plugin '{name}' (from {source}) is not an importable module; give a module on the Python path "
            "or the path of a .py file"
        )
    return importlib.import_module(name)


def _import_file(path: Path, spec: str, source: str) -> ModuleType:
    """Execute the ``.py`` file at ``path`` as a module of its own (named after the file and a hash
    of its path, so two ``relabel.py`` in different folders do not clash)."""
    if not path.exists():
        raise PluginNotFoundError(f"plugin file '{spec}' (from {source}) does not exist")
    if path.suffix != ".py" or not path.is_file():
        raise PluginNotFoundError(f"plugin '{spec}' (from {source}) is not a .py file")
    name = f"stakes_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginNotFoundError(f"plugin file '{spec}' (from {source}) cannot be loaded as a module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up while it executes
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
