"""Frames, windows, motion overlap and index maps for streaming generation (pure functions).

InfiniteTalk generates a long video as overlapping windows of 81 frames. Each window after the first
re-uses the last 9 frames of the previous one as motion context, so it adds 72 new frames; its audio
starts 72 frames later. The last window is always a full 81 frames: where the audio runs out, the audio
features are reflected back from the end, and the extra frames are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from talkgen.errors import MediaUnreadable

FPS = 25
WINDOW = 81
MOTION = 9


@dataclass(frozen=True)
class Window:
    """One generation window, in output-frame indices (0 = first frame of the video)."""

    index: int
    start: int  # first frame of the window (its audio starts here too)
    size: int  # frames generated, always the full window
    motion: int  # leading frames that repeat the previous window's tail (0 for the first)
    total: int  # frames in the whole video

    @property
    def end(self) -> int:
        """One past the window's last frame; may exceed ``total`` for the last window."""
        return self.start + self.size

    @property
    def new_start(self) -> int:
        return self.start + self.motion

    @property
    def new_end(self) -> int:
        return min(self.end, self.total)

    @property
    def new_frames(self) -> int:
        """Frames this window contributes to the output."""
        return self.new_end - self.new_start

    @property
    def is_last(self) -> bool:
        return self.end >= self.total

    @property
    def padding(self) -> int:
        """Frames generated past the end of the audio (on reflected audio), dropped from the output."""
        return max(0, self.end - self.total)

    def keep(self) -> slice:
        """The slice of this window's generated frames that goes to the output."""
        return slice(self.motion, self.motion + self.new_frames)


def frame_count(duration_s: float, fps: int = FPS, max_seconds: float | None = None) -> int:
    """Frames for ``duration_s`` seconds of audio at ``fps``, capped at ``max_seconds`` when given."""
    seconds = duration_s if max_seconds is None else min(duration_s, max_seconds)
    frames = int(round(seconds * fps))
    if frames < 1:
        raise MediaUnreadable(
            f"The audio is {duration_s:.3f} s long, shorter than one video frame ({1 / fps:.2f} s): "
            "send longer audio."
        )
    return frames


def window_count(total: int, window: int = WINDOW, motion: int = MOTION) -> int:
    """Number of windows for ``total`` frames: 1 + ceil((total - window) / (window - motion))."""
    if total <= window:
        return 1
    return 1 + math.ceil((total - window) / (window - motion))


def windows(total: int, window: int = WINDOW, motion: int = MOTION) -> list[Window]:
    """All windows covering ``total`` frames, in order."""
    if not 0 <= motion < window:
        raise ValueError(f"motion frames must be in [0, {window}), got {motion}")
    step = window - motion
    return [
        Window(index=k, start=k * step, size=window, motion=motion if k else 0, total=total)
        for k in range(window_count(total, window, motion))
    ]


def audio_index(frame: int, total: int) -> int:
    """The audio-feature frame used for video frame ``frame``: itself, reflected past the end."""
    if total < 1:
        raise ValueError("total must be >= 1")
    if frame < total:
        return max(frame, 0)
    reflected = 2 * total - 1 - frame  # frame total -> total-1, total+1 -> total-2, ...
    return min(max(reflected, 0), total - 1)


def window_audio_indices(win: Window) -> list[int]:
    """Audio-feature frame for each of the window's generated frames (reflected past the end)."""
    return [audio_index(f, win.total) for f in range(win.start, win.end)]


def window_audio_range(win: Window) -> tuple[int, int]:
    """The half-open range of real audio-feature frames a window reads (before reflection)."""
    return win.start, min(win.end, win.total)


def source_index_at(frame: int, source_fps: float, fps: int = FPS) -> int:
    """The source frame on screen at output frame ``frame``: floor(frame * source_fps / fps), unclamped."""
    return math.floor(frame * source_fps / fps + 1e-9)


def source_frame_index(frame: int, source_fps: float, source_frames: int, fps: int = FPS) -> int:
    """For V2V: the source-video frame shown at output frame ``frame`` (the source's real fps)."""
    if source_frames < 1 or source_fps <= 0:
        raise ValueError("source video needs at least one frame and a positive fps")
    return min(source_index_at(frame, source_fps, fps), source_frames - 1)


def window_source_frame(win: Window, source_fps: float, source_frames: int, fps: int = FPS) -> int:
    """For V2V: the source frame that conditions window ``win`` (the frame at its start time)."""
    return source_frame_index(win.start, source_fps, source_frames, fps)
