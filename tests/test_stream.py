"""Live HLS segments: the segmenter on its own (fast), the request/setting contract, S3 with presigned links."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from talkgen.plan import windows
from tests.support.media_factory import make_wav

FPS = 25
@dataclass
class DecodedSegment:
    frames: list[np.ndarray]
    first_is_key: bool
    keyframes: int
    video_pts: list[float]  # seconds
    audio_samples: int
    audio_rate: int
    audio_start: float | None
    audio_end: float | None

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.audio_rate if self.audio_rate else 0.0

    @property
    def aac_frame(self) -> float:
        """One AAC frame (1024 samples), in seconds."""
        return 1024 / self.audio_rate


def decode_segment(data: bytes | Path) -> DecodedSegment:
    """A segment's frames, whether its first frame is a keyframe, its timestamps and its audio."""
    blob = data.read_bytes() if isinstance(data, Path) else data
    with av.open(io.BytesIO(blob)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        first_key = packets[0].is_keyframe
        keys = sum(p.is_keyframe for p in packets)
    with av.open(io.BytesIO(blob)) as c:
        vs = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(vs):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(float(f.pts * vs.time_base))
    samples, rate, a0, a1 = 0, 0, None, None
    with av.open(io.BytesIO(blob)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            rate = a.rate
            for f in c.decode(a):
                start = float(f.pts * a.time_base)
                a0 = start if a0 is None else a0
                a1 = start + f.samples / f.sample_rate
                samples += f.samples
    return DecodedSegment(frames, first_key, keys, pts, samples, rate, a0, a1)


def playlist_entries(text: str) -> list[tuple[float, str]]:
    lines = text.strip().splitlines()
    return [(float(lines[i][len("#EXTINF:"):].rstrip(",")), lines[i + 1])
            for i in range(len(lines)) if lines[i].startswith("#EXTINF:")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _frames(start: int, count: int, size: int = 64) -> np.ndarray:
    """Smooth moving gradients (like video, unlike noise)."""
    y, x = np.mgrid[0:size, 0:size]
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        t = start + i
        out[i, ..., 0] = (x * 3 + t * 2) % 256
        out[i, ..., 1] = (y * 3 + t) % 256
        out[i, ..., 2] = ((x + y) + t * 3) % 256
    return out


def _fake_job(tmp_path: Path, frames: int, job_id: str = "unit", soundtrack: bool = True):  # type: ignore[no-untyped-def]
    wav = make_wav(tmp_path / "track.wav", seconds=frames / FPS + 0.3, freq=300.0) if soundtrack else None
    return SimpleNamespace(id=job_id, fps=FPS, width=64, height=64, frames=frames,
                           windows=windows(frames, 81, 9), audio=SimpleNamespace(soundtrack=wav))


def _run_segmenter(tmp_path: Path, job, folder: Path, events: list, upto: int | None = None, resume_at: int = 0):  # type: ignore[no-untyped-def]
    """Write the job's windows through the mp4 writer and a segmenter as the service and an engine do."""
    from talkgen.media.writer import VideoWriter
    from talkgen.settings import Settings
    from talkgen.streaming import Segmenter, Store

    segmenter = Segmenter(job, Store(str(folder), Settings()), events.append)
    writer = VideoWriter(tmp_path / f"out-{resume_at}.mp4", job.width, job.height, FPS, soundtrack=job.audio.soundtrack,
                         total_frames=job.frames, keep_parts=True)
    for win in job.windows[:upto]:
        writer.write(_frames(win.new_start, win.new_frames))
        segmenter.cut(win.index, writer.cut(), resumed=win.index < resume_at)
    if upto is None:
        writer.close()
        segmenter.finish(writer.tail)
    else:
        writer.abort()
    return segmenter, tmp_path / f"out-{resume_at}.mp4"


def joined_audio(paths: list[Path]) -> np.ndarray:
    """The segments' soundtrack as a player hears it: one decoder over the segments in turn (the segments
    are one TS stream cut in pieces), less the AAC priming (the mp4's edit list hides it)."""
    blob = b"".join(p.read_bytes() for p in paths)
    with av.open(io.BytesIO(blob)) as c:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(c.streams.audio[0])])
    return samples[1024:]


def mp4_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(c.streams.audio[0])])


def assert_same_audio(segments: np.ndarray, mp4: np.ndarray) -> None:
    """The same samples (the same AAC packets, decoded), lengths within one AAC frame."""
    assert abs(len(segments) - len(mp4)) <= 1024, (len(segments), len(mp4))
    common = min(len(segments), len(mp4))
    np.testing.assert_array_equal(segments[:common], mp4[:common])


def test_segments_match_the_mp4_and_each_other(tmp_path):
    from tests.support.video_check import decode

    job = _fake_job(tmp_path, 230)  # windows of 81, 72, 72 and 5 new frames
    folder = tmp_path / "v.hls"
    events: list[dict] = []
    _, mp4 = _run_segmenter(tmp_path, job, folder, events)

    assert [e["index"] for e in events] == [0, 1, 2, 3] == [e["window"] for e in events]
    assert [e["frames"] for e in events] == [w.new_frames for w in job.windows]
    assert events[1] == {"event": "segment", "job_id": "unit", "window": 1, "index": 1,
                         "url": str(folder / "segment-00001.ts"), "playlist": str(folder / "playlist.m3u8"),
                         "frames": 72, "seconds": 2.88, "start": 3.24}
    text = (folder / "playlist.m3u8").read_text()
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
                           "#EXT-X-MEDIA-SEQUENCE:0\n")
    assert text.endswith("#EXT-X-ENDLIST\n")
    assert playlist_entries(text) == [(3.24, "segment-00000.ts"), (2.88, "segment-00001.ts"),
                                      (2.88, "segment-00002.ts"), (0.2, "segment-00003.ts")]

    video = decode(mp4)
    segments = [decode_segment(folder / f"segment-{i:05d}.ts") for i in range(4)]
    assert all(s.first_is_key for s in segments)
    joined = [f for s in segments for f in s.frames]
    assert len(joined) == video.count == 230
    for a, b in zip(joined, video.frames, strict=True):  # the mp4's own packets: the very same pictures
        np.testing.assert_array_equal(a, b)
    made = _frames(0, 230)
    assert np.mean([psnr(a, b) for a, b in zip(joined, made, strict=True)]) > 28.0  # CRF 19 on hard gradients: 29.8
    pts = [t for s in segments for t in s.video_pts]  # one timeline across segment files
    assert np.allclose(np.diff(pts), 1 / FPS)
    aac = 1024 / 16000
    for s in segments:  # each segment carries the audio of its frames, up to one AAC frame past the last one
        assert s.audio_start is not None and s.audio_end is not None
        video_end = s.video_pts[-1] + 1 / FPS
        assert 0 <= s.audio_end - video_end < aac
    assert segments[0].audio_start == pytest.approx(segments[0].video_pts[0] - aac)  # AAC priming, before frame 0
    for a, b in itertools.pairwise(segments):  # no gap, no overlap between segments
        assert b.audio_start == pytest.approx(a.audio_end, abs=1e-6)
    total = sum(s.audio_samples for s in segments) / 16000 - aac  # less the priming the mp4's edit list hides
    assert abs(total - video.audio_duration) <= aac
    assert_same_audio(joined_audio([folder / f"segment-{i:05d}.ts" for i in range(4)]), mp4_audio(mp4))

    with av.open(str(folder / "playlist.m3u8"), format="hls") as player:  # FFmpeg's HLS player (ffplay's)
        assert sum(1 for _ in player.decode(video=0)) == 230
    with av.open(str(folder / "playlist.m3u8"), format="hls") as player:
        played = sum(f.samples for f in player.decode(player.streams.audio[0])) / 16000
    assert abs(played - aac - video.audio_duration) <= aac


def test_resume_continues_the_playlist(tmp_path):
    """Stopped after window 2, then run again from the start with windows 0-1 replayed: same playlist, no
    segment written twice, and the rest appended."""
    job = _fake_job(tmp_path, 230, job_id="again")
    folder = tmp_path / "v.hls"
    first: list[dict] = []
    _run_segmenter(tmp_path, job, folder, first, upto=2)
    assert [e["index"] for e in first] == [0, 1]
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("segment-*.ts")}
    assert "#EXT-X-ENDLIST" not in (folder / "playlist.m3u8").read_text()

    second: list[dict] = []
    _run_segmenter(tmp_path, job, folder, second, resume_at=2)
    assert [e["index"] for e in second] == [2, 3]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("segment-*.ts") if p.name in before} == before
    text = (folder / "playlist.m3u8").read_text()
    assert [n for _, n in playlist_entries(text)] == [f"segment-{i:05d}.ts" for i in range(4)]
    assert text.endswith("#EXT-X-ENDLIST\n")
    pts = [t for i in range(4) for t in decode_segment(folder / f"segment-{i:05d}.ts").video_pts]
    assert len(pts) == 230 and np.allclose(np.diff(pts), 1 / FPS)


def test_another_job_in_the_folder_is_not_continued(tmp_path):
    job = _fake_job(tmp_path, 100, job_id="one")
    folder = tmp_path / "v.hls"
    _run_segmenter(tmp_path, job, folder, [], upto=1)
    events: list[dict] = []
    _run_segmenter(tmp_path, _fake_job(tmp_path, 100, job_id="two"), folder, events, resume_at=1)
    assert [e["index"] for e in events] == [0, 1]  # window 0 was written again: it was another job's


def test_video_without_soundtrack(tmp_path):
    job = _fake_job(tmp_path, 90, soundtrack=False)
    events: list[dict] = []
    _run_segmenter(tmp_path, job, tmp_path / "v.hls", events)
    assert len(events) == 2
    assert decode_segment(tmp_path / "v.hls" / "segment-00001.ts").audio_samples == 0


def test_progress_event_eta():
    from talkgen.progress import ProgressEvent

    assert "eta_s" not in ProgressEvent("j", "generate", 0.5).to_dict()
    assert ProgressEvent("j", "generate", 0.5, eta_s=12.345).to_dict()["eta_s"] == 12.3


def test_stream_needs_a_destination(service, media_dir):
    from talkgen.errors import InvalidRequest

    request = {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"), "stream": True}
    with pytest.raises(InvalidRequest) as info:
        service.generate(request)
    assert info.value.field == "stream" and "output_url" in info.value.message


def test_stream_setting_without_destination_returns_inline(settings, media_dir):
    from talkgen.service import TalkGen

    service = TalkGen(settings.model_copy(update={"stream": True}))
    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")})
    assert result.video is not None and result.playlist is None and "stream" not in result.params


def test_stream_beside_a_local_output(service, media_dir, tmp_path):
    events: list[dict] = []
    out = tmp_path / "outputs" / "clip.mp4"
    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                               "output_url": str(out), "stream": True}, on_event=events.append)
    response = result.to_response()
    folder = tmp_path / "outputs" / "clip.hls"
    assert response["playlist"] == str(folder / "playlist.m3u8") and response["segments"] == len(events) == 1
    assert response["params"]["stream"] == "per window"
    assert (folder / "playlist.m3u8").read_text().endswith("#EXT-X-ENDLIST\n")
    assert len(decode_segment(folder / "segment-00000.ts").frames) == result.frames


def test_segments_on_s3_with_presigned_links(settings, media_dir):
    pytest.importorskip("s3fs")
    import httpx

    from talkgen.service import TalkGen
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        s3.filesystem().mkdir("videos")
        service = TalkGen(settings.model_copy(update={"storage_options": {"s3": s3.storage_options}}))
        events: list[dict] = []
        result = service.generate({"image_path": str(media_dir / "face.png"),
                                   "wav_path": str(media_dir / "speech.wav"), "output_url": "s3://videos/jobs/",
                                   "job_id": "s3-stream", "stream": True}, on_event=events.append)
        assert result.video_url == "s3://videos/jobs/s3-stream.mp4"
        (event,) = events
        for link in (event["url"], event["playlist"], result.playlist):
            assert link.startswith(s3.endpoint) and "Signature=" in link, link
        assert "segment-00000.ts" in event["url"] and "/jobs/s3-stream.hls/" in event["url"]
        playlist = httpx.get(result.playlist, trust_env=False)
        assert playlist.status_code == 200 and playlist.text.endswith("#EXT-X-ENDLIST\n")
        ((_, link),) = playlist_entries(playlist.text)  # the playlist names its segments by signed links
        segment = httpx.get(link, trust_env=False)
        assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
        assert len(decode_segment(segment.content).frames) == result.frames
        assert s3.filesystem().info("videos/jobs/s3-stream.hls/playlist.m3u8")["ContentType"] == \
            "application/vnd.apple.mpegurl"


def test_stream_on_the_network_volume(settings, media_dir, tmp_path):
    from talkgen.service import TalkGen

    (tmp_path / "volume").mkdir()
    events: list[dict] = []
    result = TalkGen(settings).generate({"image_path": str(media_dir / "face.png"),
                                         "wav_path": str(media_dir / "speech.wav"), "network_volume": True,
                                         "job_id": "vol", "stream": True}, on_event=events.append)
    folder = tmp_path / "volume" / "talkgen_vol.hls"
    assert result.video_path == str(tmp_path / "volume" / "talkgen_vol.mp4")
    assert result.playlist == events[0]["playlist"] == str(folder / "playlist.m3u8")
    assert events[0]["url"] == str(folder / "segment-00000.ts") and (folder / "stream.json").is_file()


def test_eta_from_measured_windows(monkeypatch):
    from talkgen import job as job_module

    now = [100.0]
    monkeypatch.setattr(job_module.time, "monotonic", lambda: now[0])
    clock = job_module._WindowClock()
    clock.begin()
    assert clock.eta(4) is None  # nothing timed yet
    now[0] = 110.0
    clock.done(0)
    assert clock.eta(4) == pytest.approx(30.0)  # 10 s a window, three to go
    now[0] = 114.0
    assert clock.eta(4) == pytest.approx(26.0)  # counting down within the window
    now[0] = 130.0
    clock.done(1)
    assert clock.eta(4) == pytest.approx(30.0)  # (130 - 100) / 2 windows x 2 left
    replay = job_module._WindowClock()  # replayed windows are not timed
    replay.replayed(0)
    replay.replayed(1)
    now[0] = 150.0
    replay.done(2)
    assert replay.eta(4) == pytest.approx(20.0)


_WRITE_ONE = """
import sys
from pathlib import Path
from talkgen.media.writer import VideoWriter
from talkgen.plan import windows
from tests.test_stream import _frames
out, track, keep = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "keep"
with VideoWriter(out, 128, 128, 25, soundtrack=track, total_frames=160, keep_parts=keep) as writer:
    for win in windows(160, 81, 9):
        writer.write(_frames(win.new_start, win.new_frames, size=128))
        part = writer.cut()
        assert (len(part.video) > 0) == keep
"""


def test_the_mp4_is_the_same_with_or_without_a_stream(tmp_path):
    """Streaming only copies the writer's packets: the mp4 bytes do not change. Each run is a fresh process:
    x264 (as PyAV bundles it) is not bit-reproducible from run to run inside one process (its output follows
    the heap's history), with or without talkgen."""
    import subprocess
    import sys

    track = make_wav(tmp_path / "track.wav", seconds=7.0, freq=300.0)
    made = []
    for keep in ("plain", "keep", "plain"):
        out = tmp_path / f"{keep}-{len(made)}.mp4"
        subprocess.run([sys.executable, "-c", _WRITE_ONE, str(out), str(track), keep], check=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
        made.append(out.read_bytes())
    assert made[0] == made[1] == made[2]
