"""VideoWriter: what a player sees in the mp4 it writes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from talkgen.errors import EngineFailed
from talkgen.media.writer import VideoWriter
from tests.support import media_factory as mf

W, H, FPS, RATE = 128, 96, 25, 48000
AAC_FRAME_S = 1024 / RATE


def soundtrack(path: Path, seconds: float, freq: float = 440.0) -> Path:
    return mf.write_wav(path, mf.tone(seconds, RATE, freq, amp=0.3), RATE)


def colour_frames(count: int, start: int = 0) -> np.ndarray:
    """Solid frames whose colour changes with the index (cheap to check after lossy coding)."""
    idx = np.arange(start, start + count)
    frames = np.empty((count, H, W, 3), np.uint8)
    frames[..., 0] = (40 + (idx * 7) % 180)[:, None, None]
    frames[..., 1] = 120
    frames[..., 2] = (200 - (idx * 3) % 150)[:, None, None]
    return frames


def inspect(path: Path) -> dict:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
        info = {
            "frames": frames,
            "fps": float(vs.average_rate),
            "size": (vs.codec_context.width, vs.codec_context.height),
            "video_s": float(vs.duration * vs.time_base),
            "pix_fmt": vs.codec_context.pix_fmt,
            "video_codec": vs.codec_context.name,
        }
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
            info.update(audio_codec=a.codec_context.name, audio_s=float(a.duration * a.time_base),
                        audio=samples, audio_rate=a.sample_rate, audio_channels=a.channels)
    return info


def write_video(path: Path, count: int, windows: list[int] | None = None, track: Path | None = None,
                **kw) -> Path:
    windows = windows or [count]
    assert sum(windows) == count
    with VideoWriter(path, W, H, FPS, soundtrack=track, **kw) as writer:
        start = 0
        for size in windows:
            writer.write(colour_frames(size, start))
            start += size
        assert writer.frames_written == count
    return path


def test_output_is_a_25fps_h264_aac_mp4(tmp_path: Path) -> None:
    track = soundtrack(tmp_path / "s.wav", 3.0)
    out = write_video(tmp_path / "o.mp4", 75, track=track)
    info = inspect(out)
    assert len(info["frames"]) == 75
    assert info["fps"] == 25.0 and info["size"] == (W, H)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["audio_codec"] == "aac" and info["audio_channels"] == 1 and info["audio_rate"] == RATE
    assert info["video_s"] == pytest.approx(3.0, abs=1e-6)
    assert abs(info["audio_s"] - info["video_s"]) <= AAC_FRAME_S
    assert abs(len(info["audio"]) / RATE - info["video_s"]) <= AAC_FRAME_S + 1e-6
    spectrum = np.abs(np.fft.rfft(info["audio"][:RATE * 2]))
    assert np.fft.rfftfreq(RATE * 2, 1 / RATE)[int(np.argmax(spectrum))] == pytest.approx(440.0, abs=2)


def test_colours_survive_encoding(tmp_path: Path) -> None:
    out = write_video(tmp_path / "o.mp4", 30)
    decoded = inspect(out)["frames"]
    expected = colour_frames(30)
    for got, want in zip(decoded, expected, strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 4


def test_moov_before_mdat(tmp_path: Path) -> None:
    data = write_video(tmp_path / "o.mp4", 10, track=soundtrack(tmp_path / "s.wav", 1.0)).read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_windows_give_the_same_video_as_one_write(tmp_path: Path) -> None:
    track = soundtrack(tmp_path / "s.wav", 8.0)
    one = inspect(write_video(tmp_path / "one.mp4", 190, track=track))
    many = inspect(write_video(tmp_path / "many.mp4", 190, [72, 72, 1, 45], track=track))
    assert len(one["frames"]) == len(many["frames"]) == 190
    assert one["audio_s"] == many["audio_s"] == pytest.approx(190 / FPS, abs=AAC_FRAME_S)
    for a, b in zip(one["frames"], many["frames"], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seconds", [1.0, 6.0])  # shorter: padded with silence; longer: cut to the video
def test_audio_is_fitted_to_the_video(tmp_path: Path, seconds: float) -> None:
    track = soundtrack(tmp_path / "s.wav", seconds)
    info = inspect(write_video(tmp_path / "o.mp4", 100, [72, 28], track=track))
    assert info["video_s"] == pytest.approx(4.0)
    assert abs(info["audio_s"] - 4.0) <= AAC_FRAME_S
    audio = info["audio"]
    if seconds < 4.0:
        assert np.abs(audio[int(1.1 * RATE):]).max() < 1e-3
        assert np.abs(audio[: int(0.9 * RATE)]).max() > 0.1
    else:
        assert np.abs(audio[int(3.0 * RATE):int(3.9 * RATE)]).max() > 0.1


def test_audio_stays_in_sync(tmp_path: Path) -> None:
    samples = np.zeros(3 * RATE, np.float32)
    samples[RATE:RATE + 480] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(480) / RATE)  # a beep at 1.0 s
    track = mf.write_wav(tmp_path / "s.wav", samples, RATE)
    audio = inspect(write_video(tmp_path / "o.mp4", 75, [72, 3], track=track))["audio"]
    onset = int(np.argmax(np.abs(audio) > 0.2))
    assert abs(onset / RATE - 1.0) < 0.005


def test_audio_is_encoded_as_the_video_advances(tmp_path: Path) -> None:
    from talkgen.media.writer import AUDIO_CHUNK

    track = soundtrack(tmp_path / "s.wav", 12.0)
    with VideoWriter(tmp_path / "o.mp4", W, H, soundtrack=track) as writer:
        for window in range(1, 4):
            writer.write(colour_frames(72))
            video_samples = window * 72 * RATE // FPS
            assert video_samples - AUDIO_CHUNK < writer.audio_samples <= video_samples


def test_without_soundtrack_there_is_no_audio_stream(tmp_path: Path) -> None:
    info = inspect(write_video(tmp_path / "o.mp4", 5))
    assert "audio_codec" not in info and len(info["frames"]) == 5


def test_single_frame_write_and_bad_frames(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "o.mp4", W, H) as writer:
        writer.write(colour_frames(1)[0])
        assert writer.frames_written == 1
        for bad in (np.zeros((2, H, W, 3), np.float32), np.zeros((2, H + 2, W, 3), np.uint8),
                    np.zeros((H, W), np.uint8), np.zeros((1, H, W, 4), np.uint8)):
            with pytest.raises(EngineFailed):
                writer.write(bad)
        assert writer.frames_written == 1
    assert len(inspect(tmp_path / "o.mp4")["frames"]) == 1


def test_odd_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineFailed):
        VideoWriter(tmp_path / "o.mp4", 127, 96)
    assert not (tmp_path / "o.mp4").exists()


def test_unusable_paths(tmp_path: Path) -> None:
    from talkgen.errors import OutputFailed

    with pytest.raises(OutputFailed):
        VideoWriter(tmp_path / "missing-dir" / "o.mp4", W, H)
    with pytest.raises(EngineFailed, match="soundtrack"):
        VideoWriter(tmp_path / "o.mp4", W, H, soundtrack=tmp_path / "nope.wav")
    stereo = mf.make_wav(tmp_path / "st.wav", 0.5, rate=RATE, channels=2)
    with pytest.raises(EngineFailed, match="mono"):
        VideoWriter(tmp_path / "o.mp4", W, H, soundtrack=stereo)
    assert not (tmp_path / "o.mp4").exists()


def test_exception_inside_the_context_deletes_the_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "o.mp4"
    track = soundtrack(tmp_path / "s.wav", 1)
    with pytest.raises(RuntimeError), VideoWriter(path, W, H, soundtrack=track) as w:
        w.write(colour_frames(10))
        raise RuntimeError("engine crashed")
    assert not path.exists()


def test_abort_and_empty_close(tmp_path: Path) -> None:
    path = tmp_path / "o.mp4"
    writer = VideoWriter(path, W, H)
    writer.write(colour_frames(3))
    writer.abort()
    assert not path.exists()
    with pytest.raises(EngineFailed, match="No frames"):
        VideoWriter(path, W, H).close()
    assert not path.exists()


def test_close_returns_the_path_and_is_idempotent(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "o.mp4", W, H)
    writer.write(colour_frames(2))
    assert writer.close() == tmp_path / "o.mp4"
    assert writer.close() == tmp_path / "o.mp4"
    with pytest.raises(EngineFailed):
        writer.write(colour_frames(1))
