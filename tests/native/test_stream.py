"""Live HLS on the native engine (tiny preset, 128x128, four windows): a segment per window as it is made, the
finished playlist equal to the mp4, and a killed job that resumes the same playlist."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time

import numpy as np

from tests.native.conftest import SIZE, request
from tests.native.test_resume import _cli
from tests.support.video_check import decode
from tests.test_stream import assert_same_audio, decode_segment, joined_audio, mp4_audio, playlist_entries, psnr

NEW_FRAMES = [81, 72, 72, 5]  # long.wav: 230 frames


def _recording(monkeypatch) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The frames the engine hands the writer (exactly as generated)."""
    from talkgen.media.writer import VideoWriter

    made: list[np.ndarray] = []
    write = VideoWriter.write

    def recorded(self, frames):  # type: ignore[no-untyped-def]
        made.extend(np.asarray(frames).copy())
        write(self, frames)

    monkeypatch.setattr(VideoWriter, "write", recorded)
    return made


def _same_frames(segment_frames: list[np.ndarray], mp4_frames: list[np.ndarray]) -> None:
    """The segments hold the mp4's own packets: decoded, the very same pictures."""
    assert len(segment_frames) == len(mp4_frames)
    for a, b in zip(segment_frames, mp4_frames, strict=True):
        np.testing.assert_array_equal(a, b)


def test_first_segment_is_playable_while_the_job_runs(native_service, native_media, tmp_path, monkeypatch):
    made = _recording(monkeypatch)
    out = tmp_path / "out" / "talk.mp4"
    folder = tmp_path / "out" / "talk.hls"
    first_segment, carry_on = threading.Event(), threading.Event()
    events: list[dict] = []
    etas: list[float | None] = []

    def on_event(event: dict) -> None:
        events.append(event)
        if len(events) == 1:
            first_segment.set()
            assert carry_on.wait(120)  # the job holds here, after window 1, until the test has looked

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = native_service.generate(
                request(native_media, wav_path=str(native_media / "long.wav"), stream=True), output=str(out),
                on_event=on_event, progress=lambda e: etas.append(e.eta_s) if e.stage == "generate" else None)
        except BaseException as exc:  # surfaced below
            outcome["error"] = exc

    job = threading.Thread(target=run)
    job.start()
    try:
        assert first_segment.wait(240), outcome
        text = (folder / "playlist.m3u8").read_text()
        assert playlist_entries(text) == [(3.24, "segment-00000.ts")] and "#EXT-X-ENDLIST" not in text
        first = decode_segment(folder / "segment-00000.ts")
        assert len(first.frames) == 81 and first.first_is_key
        aac = first.aac_frame
        assert 0 <= first.audio_end - (first.video_pts[-1] + 1 / 25) < aac  # the window's audio, all of it
        assert first.audio_seconds - aac >= 81 / 25  # priming frame + 3.24 s
        assert not out.exists()
        made_at_pause = [f.copy() for f in made[:81]]
    finally:
        carry_on.set()
        job.join(300)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]

    assert [e["index"] for e in events] == [0, 1, 2, 3] and [e["frames"] for e in events] == NEW_FRAMES
    assert events[0]["playlist"] == str(folder / "playlist.m3u8") == result.playlist and result.segments == 4
    assert [e["start"] for e in events] == [0.0, 3.24, 6.12, 9.0]
    text = (folder / "playlist.m3u8").read_text()
    assert text.endswith("#EXT-X-ENDLIST\n") and len(playlist_entries(text)) == 4
    segments = [decode_segment(folder / f"segment-{i:05d}.ts") for i in range(4)]
    assert all(s.first_is_key for s in segments)
    video = decode(out)
    joined = [f for s in segments for f in s.frames]
    assert len(joined) == video.count == 230
    _same_frames(joined, video.frames)
    _same_frames(first.frames, video.frames[:81])  # what was playable at the pause is the mp4's start
    assert all(np.array_equal(a, b) for a, b in zip(made[:81], made_at_pause, strict=True))
    assert np.mean([psnr(a, b) for a, b in zip(joined, made, strict=True)]) > 25.0  # CRF 19 on noise-like frames
    assert np.allclose(np.diff([t for s in segments for t in s.video_pts]), 1 / 25)
    aac = segments[0].aac_frame
    audio = sum(s.audio_seconds for s in segments) - aac  # less the priming the mp4's edit list hides
    assert abs(audio - video.audio_duration) <= aac
    assert_same_audio(joined_audio([folder / f"segment-{i:05d}.ts" for i in range(4)]), mp4_audio(out))
    assert etas[0] is None and etas[-1] is not None  # an ETA once the first window was timed
    assert result.params["stream"] == "per window"


def test_kill_after_window_two_then_resume_continues_the_playlist(native_service, native_media, tiny_models,
                                                                 tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    folder = tmp_path / "live"
    state = work / "talkgen-checkpoints" / "resume-me" / "state.json"
    cmd, env = _cli(native_media, tiny_models, work, tmp_path / "resumed.mp4")
    cmd += ["--stream-dir", str(folder)]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("windows_done") == 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert json.loads(state.read_text())["windows_done"] == 2, err.decode()[-2000:]
    assert f"streaming: {folder / 'playlist.m3u8'}" in err.decode()  # printed at the first segment
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("segment-*.ts")}
    assert {"segment-00000.ts", "segment-00001.ts"} <= set(before)
    kept = {n: t for n, t in before.items() if n in ("segment-00000.ts", "segment-00001.ts")}

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = json.loads(rerun.stdout)
    assert result["params"]["resumed_from_window"] == 2
    assert result["playlist"] == str(folder / "playlist.m3u8") and result["segments"] == 4
    assert f"streaming: {folder / 'playlist.m3u8'}" in rerun.stderr

    text = (folder / "playlist.m3u8").read_text()
    assert [n for _, n in playlist_entries(text)] == [f"segment-{i:05d}.ts" for i in range(4)]
    assert [d for d, _ in playlist_entries(text)] == [f / 25 for f in NEW_FRAMES]
    assert text.endswith("#EXT-X-ENDLIST\n") and text.count("#EXTINF") == 4
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in folder.glob("segment-*.ts"))
            if n in kept} == kept  # what the killed run streamed stays as it was
    segments = [decode_segment(folder / f"segment-{i:05d}.ts") for i in range(4)]
    assert [len(s.frames) for s in segments] == NEW_FRAMES and all(s.first_is_key for s in segments)
    assert np.allclose(np.diff([t for s in segments for t in s.video_pts]), 1 / 25)  # one timeline
    for a, b in itertools.pairwise(segments):
        assert abs(b.audio_start - a.audio_end) < 1e-6  # audio continues across the resume
    native_service.generate(request(native_media, wav_path=str(native_media / "long.wav"), seed=11, width=SIZE,
                                    height=SIZE), output=str(tmp_path / "straight.mp4"),
                            stream_dir=str(tmp_path / "straight"))
    video = decode(tmp_path / "resumed.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(video.frames, decode(tmp_path / "straight.mp4").frames,
                                                    strict=True))
    new = sum(NEW_FRAMES[:2])
    _same_frames([f for s in segments[2:] for f in s.frames], video.frames[new:])  # encoded by this run
    # Segments 0-1 were encoded by the killed run, the mp4's windows 0-1 again by this one (from the checkpoint's
    # frames): the same encoder calls, but x264 is not bit-reproducible across processes with different pasts.
    kept_frames = [f for s in segments[:2] for f in s.frames]
    assert min(psnr(a, b) for a, b in zip(kept_frames, video.frames[:new], strict=True)) > 25.0
    assert_same_audio(joined_audio([folder / f"segment-{i:05d}.ts" for i in range(4)]),
                      mp4_audio(tmp_path / "resumed.mp4"))

