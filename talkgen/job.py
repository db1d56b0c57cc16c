"""A prepared job: everything an engine needs, already fetched, probed and planned."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talkgen.errors import Cancelled, Timeout
from talkgen.plan import MOTION, WINDOW, Window, windows
from talkgen.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from talkgen.media.audio import PreparedAudio
    from talkgen.media.kinds import Media
    from talkgen.media.probe import AVInfo, ImageInfo
    from talkgen.media.writer import VideoWriter
    from talkgen.mode import Mode
    from talkgen.request import TalkRequest
    from talkgen.settings import Settings


@dataclass
class Job:
    """One talking-video job. Engines read it and write frames to ``writer``."""

    id: str
    request: TalkRequest
    mode: Mode
    settings: Settings
    workdir: Path
    media: dict[str, Media]
    visual: ImageInfo | AVInfo
    audio: PreparedAudio
    width: int
    height: int
    fps: int
    seed: int
    speaker_boxes: list[list[float]] | None
    writer: VideoWriter | None = None
    params: dict[str, Any] = field(default_factory=dict)
    on_progress: ProgressCallback | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value after which the job fails with `timeout`
    on_delivered: list[Callable[[], None]] = field(default_factory=list)  # run once the video is delivered
    window_size: int = WINDOW
    motion_frames: int = MOTION

    @property
    def frames(self) -> int:
        """Frames the video must have (25 fps × audio seconds, capped)."""
        return self.audio.frames

    @property
    def windows(self) -> list[Window]:
        return windows(self.frames, self.window_size, self.motion_frames)

    @property
    def visual_path(self) -> Path:
        return self.media[self.mode.visual_role.name].path

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        """Send a progress event to the caller's callback (never raises into the engine)."""
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.id, stage, fraction, message))

    def check_cancelled(self) -> None:
        """Raise if the job was cancelled or ran past its deadline; engines call this between windows."""
        if self.cancel.is_set():
            raise Cancelled("The job was cancelled.", retryable=False)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Timeout(
                f"The job ran past its {self.settings.job_timeout_s:g} s limit (TALKGEN_JOB_TIMEOUT_S): send "
                "shorter audio or a smaller size, or raise the limit."
            )
