"""Decode a produced mp4 and report what a user would check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class DecodedVideo:
    frames: list[np.ndarray]
    fps: float
    width: int
    height: int
    video_duration: float
    audio_duration: float | None
    audio_codec: str | None

    @property
    def count(self) -> int:
        return len(self.frames)


def decode(path: Path) -> DecodedVideo:
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        fps = float(vs.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(vs)]
    with av.open(str(path)) as container:
        audio_duration = codec = None
        if container.streams.audio:
            a = container.streams.audio[0]
            codec = a.codec_context.name
            samples = sum(f.samples for f in container.decode(a))
            audio_duration = samples / a.rate
    h, w = frames[0].shape[:2]
    return DecodedVideo(frames, fps, w, h, len(frames) / fps, audio_duration, codec)
