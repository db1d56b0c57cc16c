"""Files the engine hands to ComfyUI per window (audio slice, motion frames) and reads back (frames)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from talkgen.media.audio import write_wav


def write_audio_slice(track: np.ndarray, rate: int, start_s: float, seconds: float, path: Path) -> Path:
    """The ``[start_s, start_s + seconds)`` slice of a 16 kHz track as a WAV (zero-padded past the end)."""
    start, length = round(start_s * rate), round(seconds * rate)
    piece = np.zeros(length, np.float32)
    chunk = track[start:start + length]
    piece[: len(chunk)] = chunk
    write_wav(path, iter([piece]), rate)
    return path


def write_frames(frames: np.ndarray, path: Path, fps: int = 25) -> Path:
    """``[T, H, W, 3]`` uint8 → an H.264 mp4 with near-lossless quality (for motion frames)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    return path


def iter_frames(path: Path, width: int, height: int, chunk: int = 72) -> Iterator[np.ndarray]:
    """A video's frames in ``[<=chunk, H, W, 3]`` uint8 batches, fitted to ``width`` x ``height`` (streaming)."""
    from talkgen.media.frames import fit_frame

    batch: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            array = frame.to_ndarray(format="rgb24")
            batch.append(array if array.shape[:2] == (height, width) else fit_frame(array, width, height))
            if len(batch) == chunk:
                yield np.stack(batch)
                batch = []
    if batch:
        yield np.stack(batch)


def write_mask(box: list[float], src_w: int, src_h: int, out_w: int, out_h: int, path: Path) -> Path:
    """A white-on-black PNG at the output size: ``box`` (source pixels) through the frames' cover-and-crop."""
    from PIL import Image

    scale = max(out_w / src_w, out_h / src_h)
    left = (max(out_w, round(src_w * scale)) - out_w) // 2
    top = (max(out_h, round(src_h * scale)) - out_h) // 2
    x0, y0, x1, y1 = box
    c0, c1 = (max(0, min(out_w, round(x * scale - left))) for x in (x0, x1))
    r0, r1 = (max(0, min(out_h, round(y * scale - top))) for y in (y0, y1))
    mask = np.zeros((out_h, out_w, 3), np.uint8)
    mask[r0:r1, c0:c1] = 255
    Image.fromarray(mask).save(path)
    return path


def read_frames(path: Path, width: int, height: int) -> np.ndarray:
    """All frames of a video as ``[T, H, W, 3]`` uint8, fitted to ``width`` x ``height``."""
    from talkgen.media.frames import fit_frame

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack([f if f.shape[:2] == (height, width) else fit_frame(f, width, height) for f in frames])
