"""Concurrent jobs on one warm native engine give exactly the videos they give alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.native.conftest import request
from tests.support.media_factory import make_wav
from tests.support.video_check import decode


def test_concurrent_jobs_match_their_solo_runs_frame_by_frame(native_service, native_media, tmp_path):
    """One and two speakers (the adapter swaps), different audio and seeds; one request twice."""
    make_wav(native_media / "one_a.wav", seconds=1.2, freq=200.0)
    make_wav(native_media / "one_b.wav", seconds=1.2, freq=120.0, envelope_hz=6.0)
    jobs = {
        "single": request(native_media, wav_path=str(native_media / "one_a.wav"), seed=5),
        "other": request(native_media, wav_path=str(native_media / "one_b.wav"), seed=9, steps=3),
        "duo": request(native_media, wav_path=str(native_media / "one_a.wav"),
                       wav_path_2=str(native_media / "one_b.wav"), person_count="multi", seed=7),
    }
    solo = {name: _render(native_service, req, tmp_path / f"solo-{name}.mp4") for name, req in jobs.items()}

    batch = [*jobs.items(), ("single", jobs["single"])]
    events: list = []
    with ThreadPoolExecutor(len(batch)) as pool:
        futures = [pool.submit(_render, native_service, req, tmp_path / f"together-{i}.mp4", events.append)
                   for i, (_, req) in enumerate(batch)]
        together = [f.result(timeout=600) for f in futures]

    for (name, _), video in zip(batch, together, strict=True):
        alone = solo[name]
        assert video.count == alone.count > 0, name
        assert all(np.array_equal(a, b) for a, b in zip(video.frames, alone.frames, strict=True)), name
        assert video.audio_duration == alone.audio_duration
    assert any(e.stage == "queue" and "waiting for the engine" in e.message for e in events)


def _render(service, req, out, progress=None):  # type: ignore[no-untyped-def]
    service.generate(req, output=str(out), progress=progress)
    return decode(out)
