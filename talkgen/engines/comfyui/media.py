"""Files the engine hands to ComfyUI per window (audio slice, motion frames) and reads back (frames)."""

from __future__ import annotations

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


def read_frames(path: Path, width: int, height: int) -> np.ndarray:
    """All frames of a video as ``[T, H, W, 3]`` uint8, fitted to ``width`` x ``height``."""
    from talkgen.media.frames import fit_frame

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack([f if f.shape[:2] == (height, width) else fit_frame(f, width, height) for f in frames])
