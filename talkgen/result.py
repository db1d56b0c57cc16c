"""What a finished job returns."""

from __future__ import annotations

import base64
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TalkResult:
    """A finished video and the parameters that made it.

    Exactly one of ``video`` (data URI), ``video_url`` (storage URL) or ``video_path`` (local file) is set.
    """

    job_id: str
    mode: str
    engine: str
    width: int
    height: int
    fps: int
    frames: int
    duration: float
    seed: int
    video: str | None = None
    video_url: str | None = None
    video_path: str | None = None
    presigned_url: str | None = None
    size_bytes: int = 0
    playlist: str | None = None  # streaming: the HLS playlist (path, storage URL or presigned https URL)
    segments: int | None = None  # streaming: how many segments the playlist lists
    audio_type: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_response(self) -> dict[str, Any]:
        """The runtime response: the seed's video field first, then metadata."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        ordered = {k: data.pop(k) for k in ("video", "video_url", "presigned_url", "video_path") if k in data}
        return {**ordered, **data}

    def save(self, path: str | Path) -> Path:
        """Write the video to a local file, wherever it was delivered."""
        target = Path(path)
        if self.video is not None:
            payload = self.video.split(",", 1)[1]
            target.write_bytes(base64.b64decode(payload))
        elif self.video_path is not None:
            if Path(self.video_path).resolve() != target.resolve():
                shutil.copyfile(self.video_path, target)
        elif self.video_url is not None:
            import fsspec

            with fsspec.open(self.video_url, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return target
