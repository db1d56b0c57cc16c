"""probe_image / load_image / probe_av on real files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkgen.errors import MediaTooLarge, MediaUnreadable
from talkgen.media.probe import load_image, probe_av, probe_image
from tests.support import media_factory as mf

CAP = 50_000_000


def test_probe_image_reads_size_format_mode(tmp_path: Path) -> None:
    png = mf.make_image(tmp_path / "face.png", 96, 64)
    info = probe_image(png, CAP)
    assert (info.width, info.height, info.format, info.mode) == (96, 64, "PNG", "RGB")
    jpg = mf.make_image(tmp_path / "face.jpg", 50, 70, fmt="JPEG")
    info = probe_image(jpg, CAP)
    assert (info.width, info.height, info.format) == (50, 70, "JPEG")


@pytest.mark.parametrize("orientation, swapped", [(1, False), (3, False), (6, True), (8, True)])
def test_exif_orientation_swaps_size(tmp_path: Path, orientation: int, swapped: bool) -> None:
    path = mf.make_exif_jpeg(tmp_path / "o.jpg", 96, 64, orientation)
    info = probe_image(path, CAP)
    expected = (64, 96) if swapped else (96, 64)
    assert (info.width, info.height) == expected
    img = load_image(path, CAP)
    assert img.mode == "RGB"
    assert img.size == expected


def test_exif_orientation_6_rotates_pixels_clockwise(tmp_path: Path) -> None:
    # Orientation 6: the stored image must be turned 90 degrees clockwise, so the stored top-left
    # corner ends up top-right.
    arr = np.asarray(load_image(mf.make_exif_jpeg(tmp_path / "o.jpg", 96, 64, 6), CAP))
    assert arr.shape == (96, 64, 3)
    top_right = arr[2:10, -10:-2].reshape(-1, 3).mean(axis=0)
    top_left = arr[2:10, 2:10].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 60
    assert abs(top_left[0] - 128) < 20


def test_huge_png_is_refused_without_decoding(tmp_path: Path) -> None:
    path = mf.make_header_only_png(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200
    for fn in (probe_image, load_image):
        with pytest.raises(MediaTooLarge) as err:
            fn(path, CAP, field="image_url")
        assert err.value.field == "image_url"
        assert "TALKGEN_MAX_IMAGE_PIXELS" in err.value.message


def test_own_cap_applies_before_pixel_data_is_read(tmp_path: Path) -> None:
    # The file's pixel data is bogus: decoding it fails. Refusal by size proves nothing was decoded.
    path = mf.make_header_only_png(tmp_path / "big.png", 3000, 3000)
    with pytest.raises(MediaTooLarge) as err:
        load_image(path, max_pixels=1_000_000, field="image_base64")
    assert "1,000,000" in err.value.message
    assert err.value.details["width"] == 3000
    with pytest.raises(MediaUnreadable):
        load_image(path, max_pixels=10_000_000)


@pytest.mark.parametrize("pillow_limit", [4000, 2000])  # DecompressionBombWarning, then Error
def test_pillow_bomb_guard_becomes_media_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    pillow_limit: int) -> None:
    path = mf.make_image(tmp_path / "face.png", 96, 64)  # 6144 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with pytest.raises(MediaTooLarge) as err:
        load_image(path, CAP, field="image_path")
    assert "TALKGEN_MAX_IMAGE_PIXELS" in err.value.message


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (20, 10), (0, 0, 0, 0)).save(path)
    img = load_image(path, CAP)
    assert img.mode == "RGB"
    assert np.asarray(img).min() == 255


def test_truncated_and_garbage_images_are_unreadable(tmp_path: Path) -> None:
    jpg = mf.make_image(tmp_path / "face.jpg", 200, 150, fmt="JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    with pytest.raises(MediaUnreadable) as err:
        load_image(cut, CAP, field="image_url")
    assert err.value.field == "image_url"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"nonsense" * 10)
    with pytest.raises(MediaUnreadable):
        probe_image(junk, CAP)


def test_probe_audio_files(tmp_path: Path) -> None:
    info = probe_av(mf.make_wav(tmp_path / "a.wav", 2.0, rate=16000, channels=2))
    assert info.has_audio and not info.has_video
    assert (info.sample_rate, info.channels, info.audio_codec) == (16000, 2, "pcm_s16le")
    assert info.duration == pytest.approx(2.0, abs=0.01)
    info = probe_av(mf.make_audio(tmp_path / "a.mp3", 1.5))
    assert info.sample_rate == 44100 and info.channels == 1
    assert info.duration == pytest.approx(1.5, abs=0.05)


def test_probe_video_with_audio(tmp_path: Path) -> None:
    info = probe_av(mf.make_video(tmp_path / "v.mp4", 2.0, fps=30, width=96, height=64, audio_seconds=2.0))
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.frames) == (96, 64, 60)
    assert info.fps == pytest.approx(30.0)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.duration == pytest.approx(2.0, abs=0.05)
    silent = probe_av(mf.make_video(tmp_path / "s.mp4", 1.0, fps=24))
    assert silent.has_video and not silent.has_audio and silent.fps == pytest.approx(24.0)


def test_corrupt_wav_header_is_unreadable(tmp_path: Path) -> None:
    good = mf.make_wav(tmp_path / "a.wav", 1.0).read_bytes()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(good[:12] + b"\x00" * 32 + good[44:])  # fmt chunk wiped
    with pytest.raises(MediaUnreadable) as err:
        probe_av(bad, field="wav_url")
    assert err.value.field == "wav_url"


def test_empty_wav_has_no_audio_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16000)
    with pytest.raises(MediaUnreadable, match="no audio samples") as err:
        probe_av(path, field="wav_path")
    assert err.value.field == "wav_path"


def test_truncated_mp4_is_unreadable(tmp_path: Path) -> None:
    data = mf.make_video(tmp_path / "v.mp4", 2.0, audio_seconds=2.0).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaUnreadable) as err:
        probe_av(cut, field="video_url")
    assert err.value.field == "video_url"
    assert err.value.code == "media_unreadable"


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_faststart_mp4_is_unreadable(tmp_path: Path, keep: float) -> None:
    # moov first: the header survives the cut, the data does not
    from talkgen.media.writer import VideoWriter

    track = mf.write_wav(tmp_path / "s.wav", mf.tone(4.0, 48000), 48000)
    with VideoWriter(tmp_path / "v.mp4", 64, 48, soundtrack=track) as writer:
        writer.write(np.random.default_rng(1).integers(0, 256, (100, 48, 64, 3), dtype=np.uint8))
    data = (tmp_path / "v.mp4").read_bytes()
    assert probe_av(tmp_path / "v.mp4").duration == pytest.approx(4.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaUnreadable, match="truncated"):
        probe_av(cut, field="video_base64")


def test_random_bytes_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaUnreadable):
        probe_av(path)
