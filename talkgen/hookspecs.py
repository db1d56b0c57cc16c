"""The plugin contract. Built-ins implement these hooks exactly like third-party plugins do.

Each hook receives a ``register`` callback; call it once per thing the plugin provides::

    from talkgen import hookimpl

    @hookimpl
    def register_engines(register):
        register("my-engine", lambda settings: MyEngine(settings))

Plugins are found through the ``talkgen`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "talkgen"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_sources(register: Callable[[Any], None]) -> None:
    """Register media sources: ``register(source)`` with a `talkgen.sources.Source` instance."""


@hookspec
def register_engines(register: Callable[..., None]) -> None:
    """Register engines: ``register(name, factory, description="")``; ``factory(settings)`` builds one.

    Import heavy dependencies inside the factory, not at module level.
    """


@hookspec
def register_runtimes(register: Callable[..., None]) -> None:
    """Register runtimes: ``register(name, entrypoint, description="")``; ``entrypoint(argv)`` runs it."""


@hookspec
def register_sinks(register: Callable[[Any], None]) -> None:
    """Register output sinks: ``register(sink)`` with a `talkgen.outputs.Sink` instance."""
