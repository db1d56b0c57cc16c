"""The plugin manager and the registry of what plugins provide.

Built-in modules register through the same hooks as third-party packages (entry-point group
``talkgen``). Nothing is imported until something asks for the registry, so ``talkgen --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from talkgen import hookspecs

BUILTIN_PLUGINS: tuple[str, ...] = (
    "talkgen.sources.path",
    "talkgen.sources.url",
    "talkgen.sources.base64",
    "talkgen.sources.fsspec",
    "talkgen.outputs",
    "talkgen.engines.builtin",
    "talkgen.runtimes.builtin",
)
BUILTIN_DIST = "talkgen (built-in)"
DISABLE_ENTRYPOINTS_ENV = "TALKGEN_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Registered:
    """One thing a plugin registered, and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    description: str = ""


@dataclass
class Registry:
    """Everything registered, by kind. Later registrations of a name replace earlier ones."""

    sources: list[Registered] = field(default_factory=list)
    engines: dict[str, Registered] = field(default_factory=dict)
    runtimes: dict[str, Registered] = field(default_factory=dict)
    sinks: list[Registered] = field(default_factory=list)

    def all(self) -> list[Registered]:
        return [*self.sources, *self.engines.values(), *self.runtimes.values(), *self.sinks]


_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and installed plugins loaded."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            for module_name in BUILTIN_PLUGINS:
                pm.register(importlib.import_module(module_name), name=module_name)
            if os.environ.get(DISABLE_ENTRYPOINTS_ENV, "").lower() not in ("1", "true", "yes"):
                pm.load_setuptools_entrypoints(hookspecs.PROJECT)
            pm.check_pending()
            _pm = pm
        return _pm


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object or module at run time (tests, embedding applications)."""
    get_plugin_manager().register(plugin, name=name)
    reset_registry()


def unregister_plugin(name: str) -> None:
    get_plugin_manager().unregister(name=name)
    reset_registry()


def reset_registry() -> None:
    global _registry
    _registry = None


def reset_plugin_manager() -> None:
    """Forget every loaded plugin; the next use reloads built-ins and entry points (tests)."""
    global _pm
    with _lock:
        _pm = None
    reset_registry()


def _distributions(pm: pluggy.PluginManager) -> dict[int, str]:
    names = {}
    for plugin, dist in pm.list_plugin_distinfo():
        names[id(plugin)] = f"{dist.metadata['Name']} {dist.version}"
    return names


def _collect(pm: pluggy.PluginManager, hook: str, kind: str, add: Callable[[Registered], None]) -> None:
    dists = _distributions(pm)
    # get_hookimpls() lists in registration order (built-ins first); call each so we know who registered.
    for impl in getattr(pm.hook, hook).get_hookimpls():
        dist = dists.get(id(impl.plugin), BUILTIN_DIST if impl.plugin_name in BUILTIN_PLUGINS else "(runtime)")

        def register(*args: Any, _impl=impl, _dist=dist, description: str = "") -> None:
            if kind in ("source", "sink"):
                (obj,) = args
                name = getattr(obj, "name", type(obj).__name__)
            else:
                name, obj = args
            desc = description or getattr(obj, "description", "") or ""
            add(Registered(kind, name, obj, _impl.plugin_name, _dist, desc))

        impl.function(register=register)


def get_registry() -> Registry:
    """The registry, built once per process (call `reset_registry` after registering plugins)."""
    global _registry
    pm = get_plugin_manager()
    with _lock:
        if _registry is None:
            reg = Registry()
            _collect(pm, "register_sources", "source", reg.sources.append)
            _collect(pm, "register_sinks", "sink", reg.sinks.append)
            _collect(pm, "register_engines", "engine", lambda r: reg.engines.__setitem__(r.name, r))
            _collect(pm, "register_runtimes", "runtime", lambda r: reg.runtimes.__setitem__(r.name, r))
            _registry = reg
        return _registry
