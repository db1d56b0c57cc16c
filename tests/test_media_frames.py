"""fit_frame geometry and VideoFrameReader index mapping, seeking and resampling to 25 fps."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkgen.errors import UnsupportedMedia
from talkgen.media.frames import SEEK_AHEAD_FRAMES, VideoFrameReader, fit_frame
from talkgen.media.probe import probe_av
from tests.support import media_factory as mf

W, H = 160, 32  # counter videos are read at their own size, so stripes stay where they were drawn


def coordinate_image(width: int, height: int) -> np.ndarray:
    """R encodes x, G encodes y (0..255 across the image)."""
    xs = np.linspace(0, 255, width)
    ys = np.linspace(0, 255, height)
    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 0] = np.round(xs)[None, :]
    arr[..., 1] = np.round(ys)[:, None]
    return arr


@pytest.mark.parametrize(
    "src, dst",
    [((400, 200), (100, 100)), ((200, 400), (160, 96)), ((300, 300), (64, 128)), ((64, 48), (256, 192))],
)
def test_fit_frame_covers_then_centre_crops(src: tuple[int, int], dst: tuple[int, int]) -> None:
    (sw, sh), (dw, dh) = src, dst
    out = fit_frame(coordinate_image(sw, sh), dw, dh)
    assert out.shape == (dh, dw, 3) and out.dtype == np.uint8
    scale = max(dw / sw, dh / sh)
    left = (sw * scale - dw) / 2 / scale  # source pixels cropped on each side
    top = (sh * scale - dh) / 2 / scale
    # output pixel (j, i) samples source x = left + (j + 0.5) / scale - 0.5
    for j in (0, dw // 2, dw - 1):
        x = left + (j + 0.5) / scale - 0.5
        assert float(out[dh // 2, j, 0]) == pytest.approx(255 * x / (sw - 1), abs=4)
    for i in (0, dh // 2, dh - 1):
        y = top + (i + 0.5) / scale - 0.5
        assert float(out[i, dw // 2, 1]) == pytest.approx(255 * y / (sh - 1), abs=4)


def test_fit_frame_keeps_exact_size_and_accepts_pil() -> None:
    arr = coordinate_image(64, 32)
    np.testing.assert_array_equal(fit_frame(arr, 64, 32), arr)
    out = fit_frame(Image.fromarray(arr).convert("RGBA"), 32, 32)
    assert out.shape == (32, 32, 3)


def bar_index(frame: np.ndarray, n: int, width: int = 96) -> set[int]:
    """Source indices whose bar (make_video) sits where this frame's bar is."""
    col = frame.mean(axis=(0, 2))
    x = int(np.argmax(np.convolve(col, np.ones(8), "valid")))
    return {i for i in range(n) if int(i * (width - 8) / max(n - 1, 1)) == x}


@pytest.mark.parametrize("src_fps", [30, 24, 25])
def test_resample_to_25_fps(tmp_path: Path, src_fps: int) -> None:
    n = 2 * src_fps
    path = mf.make_video(tmp_path / "v.mp4", 2.0, fps=src_fps, width=96, height=64)
    with VideoFrameReader(path, 96, 64) as reader:
        assert reader.info.fps == pytest.approx(src_fps)
        frames = list(reader.iter_resampled(25))
    assert len(frames) == 50  # 2 s at 25 fps
    for t, frame in enumerate(frames):
        assert frame.shape == (64, 96, 3)
        assert math.floor(t * src_fps / 25 + 1e-9) in bar_index(frame, n), t


def test_resampled_window_and_repeat_past_end(tmp_path: Path) -> None:
    path = mf.make_counter_video(tmp_path / "c.mp4", 48, fps=24, width=W, height=H)
    with VideoFrameReader(path, W, H) as reader:
        window = [mf.read_counter(f) for f in reader.iter_resampled(25, start=40, count=15)]
    expected = [min(47, math.floor(t * 24 / 25 + 1e-9)) for t in range(40, 55)]
    assert window == expected
    assert window[-5:] == [47] * 5


def test_frame_at_random_access_and_seeking(tmp_path: Path) -> None:
    n = 700
    path = mf.make_counter_video(tmp_path / "c.mp4", n, fps=25, width=W, height=H, gop=50)
    order = [0, 1, 2, 72, 144, 10, 600, 599, 650, 300, 699, 5, 450, *random.Random(7).sample(range(n), 40)]
    with VideoFrameReader(path, W, H, field="video_url") as reader:
        assert reader.info.frames == n
        for i in order:
            assert mf.read_counter(reader.frame_at(i)) == i, i
        assert mf.read_counter(reader.frame_at(n + 100)) == n - 1  # past the end: the last frame


def test_far_jump_seeks_instead_of_decoding_everything(tmp_path: Path) -> None:
    n = 600
    path = mf.make_counter_video(tmp_path / "c.mp4", n, fps=25, width=W, height=H, gop=50)
    with VideoFrameReader(path, W, H) as reader:
        assert mf.read_counter(reader.frame_at(3)) == 3
        assert mf.read_counter(reader.frame_at(SEEK_AHEAD_FRAMES + 300)) == SEEK_AHEAD_FRAMES + 300
        assert reader.frames_decoded < 200  # from frame 0 it would be over 550
        before = reader.frames_decoded
        assert mf.read_counter(reader.frame_at(SEEK_AHEAD_FRAMES + 310)) == SEEK_AHEAD_FRAMES + 310
        assert reader.frames_decoded - before == 10  # short forward steps decode forward


def test_fitted_output_size(tmp_path: Path) -> None:
    path = mf.make_video(tmp_path / "v.mp4", 1.0, fps=25, width=96, height=64)
    with VideoFrameReader(path, 48, 48) as reader:
        frame = reader.frame_at(0)
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize("rotation, corner", [(0, "top-left"), (90, "bottom-left"), (-90, "top-right"),
                                               (180, "bottom-right")])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int, corner: str) -> None:
    # Stored 64x32 with a white square top-left; turned counter-clockwise by `rotation` for display.
    path = mf.make_rotated_video(tmp_path / "r.mp4", rotation, width=64, height=32)
    info = probe_av(path)
    upright = (32, 64) if rotation % 180 else (64, 32)
    assert (info.width, info.height) == upright
    with VideoFrameReader(path, *upright) as reader:
        frame = reader.frame_at(0).astype(int)
    h, w = frame.shape[:2]
    corners = {
        "top-left": frame[:4, :4], "top-right": frame[:4, w - 4:],
        "bottom-left": frame[h - 4:, :4], "bottom-right": frame[h - 4:, w - 4:],
    }
    for name, patch in corners.items():
        assert (patch.mean() > 200) == (name == corner), name


def test_audio_file_is_not_a_video(tmp_path: Path) -> None:
    wav = mf.make_wav(tmp_path / "a.wav", 1.0)
    with pytest.raises(UnsupportedMedia) as err:
        VideoFrameReader(wav, 64, 64, field="video_url")
    assert err.value.field == "video_url"
