"""Registers the built-in engines (lazily: their heavy imports happen in the factory)."""

from __future__ import annotations

from talkgen.hookspecs import hookimpl


@hookimpl
def register_engines(register) -> None:  # type: ignore[no-untyped-def]
    """No engine is built in yet besides what plugins provide; the native engine registers here."""
