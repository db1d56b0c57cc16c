"""Shared checks for the media-source tests."""

from __future__ import annotations

import pytest

from talkgen import plugins
from talkgen.errors import TalkgenError
from talkgen.sources import FetchContext


def assert_refused(exc: pytest.ExceptionInfo[TalkgenError], ctx: FetchContext, code: str, field: str) -> None:
    """The error has ``code``, names ``field`` (attribute and message), and left no file behind."""
    assert exc.value.code == code, exc.value
    assert exc.value.field == field
    assert f"`{field}`" in exc.value.message
    leftovers = list(ctx.dest_dir.iterdir()) if ctx.dest_dir.exists() else []
    assert leftovers == []


def use_builtin_sources_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh, real plugin registry with only the built-in sources (no engines, runtimes or entry points)."""
    sources = tuple(m for m in plugins.BUILTIN_PLUGINS if m.startswith("talkgen.sources."))
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", sources)
    monkeypatch.setenv(plugins.DISABLE_ENTRYPOINTS_ENV, "1")
    monkeypatch.setattr(plugins, "_pm", None)
    monkeypatch.setattr(plugins, "_registry", None)
