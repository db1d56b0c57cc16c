"""Plugins: built-ins and third-party packages register through the same hooks."""

from __future__ import annotations

import types
from pathlib import Path

import pluggy
import pytest

from talkgen import hookimpl
from talkgen.plugins import BUILTIN_DIST, get_registry, register_plugin, unregister_plugin


def test_builtins_and_entry_point_plugin_are_registered() -> None:
    reg = get_registry()
    assert [r.name for r in reg.sources if r.distribution == BUILTIN_DIST] == ["path", "url", "base64", "fsspec"]
    assert {r.name for r in reg.sinks} >= {"inline", "file", "fsspec"}
    assert "runpod" in reg.runtimes
    engine = reg.engines["test-bars"]
    assert engine.distribution == "talkgen-test-engine 0.1" and engine.plugin == "test_bars"


def test_a_plugin_source_wins_over_builtins(tmp_path: Path, settings) -> None:
    from talkgen.request import MediaRef
    from talkgen.sources import FetchContext, fetch_media

    class Tagged:
        name, description = "tagged", "test source for tag:// references"

        def handles(self, ref: MediaRef) -> bool:
            return ref.value.startswith("tag://")

        def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
            dest = ctx.dest_for(ref)
            dest.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
            return dest

    plugin = types.SimpleNamespace(register_sources=hookimpl(lambda register: register(Tagged())))
    register_plugin(plugin, name="tagged-plugin")
    try:
        ref = MediaRef(role="audio_1", field="wav_url", via="url", value="tag://anything")
        media = fetch_media(ref, FetchContext(settings, tmp_path / "in"))
        assert media.kind == "audio" and media.source == "wav_url"
        assert get_registry().sources[-1].plugin == "tagged-plugin"
    finally:
        unregister_plugin("tagged-plugin")
    assert all(r.name != "tagged" for r in get_registry().sources)


def test_misspelled_hook_is_refused() -> None:
    from talkgen.plugins import get_plugin_manager

    bad = types.SimpleNamespace(register_engine=hookimpl(lambda register: None))
    pm = get_plugin_manager()
    pm.register(bad, name="bad")
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()
    pm.unregister(name="bad")
