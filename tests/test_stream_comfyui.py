"""Streaming on the ComfyUI engine: the native flavour (one prompt per window) cuts a segment after every
window; the wrapper flavour (one prompt per job) can only stream once ComfyUI returns the whole clip, and says so."""

from __future__ import annotations

import pytest

from tests.comfyui.test_engine import comfy_service  # noqa: F401 - fixtures
from tests.comfyui.test_wrapper import wrapper  # noqa: F401
from tests.test_stream import decode_segment, playlist_entries


def test_native_flavour_streams_per_window(comfy_service, tmp_path):  # noqa: F811
    service, server, media_dir = comfy_service
    seen: list[int] = []
    events: list[dict] = []

    def on_event(event: dict) -> None:  # the window's prompt has run; the next one has not been queued yet
        seen.append(len(server.prompts))
        events.append(event)

    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"),
                               "width": 128, "height": 128, "seed": 1, "stream": True},
                              output=str(tmp_path / "v.mp4"), on_event=on_event)
    assert [e["frames"] for e in events] == [81, 19] and seen == [1, 2]
    assert result.params["stream"] == "per window" and result.segments == 2
    text = (tmp_path / "v.hls" / "playlist.m3u8").read_text()
    assert len(playlist_entries(text)) == 2 and text.endswith("#EXT-X-ENDLIST\n")
    assert all(decode_segment(tmp_path / "v.hls" / f"segment-{i:05d}.ts").first_is_key for i in range(2))


def test_wrapper_flavour_streams_at_the_end(wrapper, media_dir, tmp_path):  # noqa: F811
    from tests.support.media_factory import make_wav

    service, server = wrapper
    make_wav(media_dir / "long.wav", seconds=4.0)
    seen: list[int] = []
    events: list[dict] = []

    def on_event(event: dict) -> None:
        seen.append(len(server.prompts))
        events.append(event)

    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"),
                               "width": 128, "height": 128, "seed": 1, "stream": True},
                              output=str(tmp_path / "v.mp4"), on_event=on_event)
    assert [e["frames"] for e in events] == [81, 19] and seen == [1, 1]  # both after the one prompt
    assert result.params["stream"] == "at end" and result.params["flavour"] == "wrapper"
    text = (tmp_path / "v.hls" / "playlist.m3u8").read_text()
    assert text.endswith("#EXT-X-ENDLIST\n") and len(playlist_entries(text)) == 2
    frames = [f for i in range(2) for f in decode_segment(tmp_path / "v.hls" / f"segment-{i:05d}.ts").frames]
    assert [int(f.mean()) for f in frames] == pytest.approx(list(range(100)), abs=2)  # in order, none lost
