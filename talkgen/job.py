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
from talkgen.progress import EventCallback, ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from talkgen.media.audio import PreparedAudio
    from talkgen.media.kinds import Media
    from talkgen.media.probe import AVInfo, ImageInfo
    from talkgen.media.writer import VideoWriter
    from talkgen.mode import Mode
    from talkgen.request import TalkRequest
    from talkgen.settings import Settings
    from talkgen.streaming import Segmenter


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
    on_event: EventCallback | None = None  # job events: {"event": "segment", ...} while streaming
    stream: Segmenter | None = None  # set when the job streams HLS: cut once per window by `window_done`
    _clock: _WindowClock = field(default_factory=lambda: _WindowClock(), repr=False)

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
        """Send a progress event to the caller's callback, with an ETA once a window has been timed."""
        if self.on_progress is not None:
            eta = None
            if stage == "generate":
                self._clock.begin()
                eta = self._clock.eta(len(self.windows))
            self.on_progress(ProgressEvent(self.id, stage, fraction, message, eta_s=eta))

    def window_done(self, index: int, *, resumed: bool = False) -> None:
        """Engines call this right after window ``index``'s new frames went to ``writer`` (also for windows
        replayed from a checkpoint: ``resumed=True``). The writer closes the window's GOP, a streaming job stores
        its packets as a segment; live windows are timed for the ETA."""
        if resumed:
            self._clock.replayed(index)
        else:
            self._clock.done(index)
        part = None if self.writer is None else self.writer.cut()
        if self.stream is not None and part is not None:
            self.stream.cut(index, part, resumed=resumed)

    def check_cancelled(self) -> None:
        """Raise if the job was cancelled or ran past its deadline; engines call this between windows."""
        if self.cancel.is_set():
            raise Cancelled("The job was cancelled.", retryable=False)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Timeout(
                f"The job ran past its {self.settings.job_timeout_s:g} s limit (TALKGEN_JOB_TIMEOUT_S): send "
                "shorter audio or a smaller size, or raise the limit."
            )


class _WindowClock:
    """Measured window times → seconds left (windows replayed from a checkpoint are not timed)."""

    def __init__(self) -> None:
        self.started: float | None = None  # first "generate" report or first window, whichever came first
        self.last: float | None = None
        self.timed = 0  # windows generated in this run
        self.finished = 0  # windows finished, replayed ones included

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def replayed(self, index: int) -> None:
        self.finished = max(self.finished, index + 1)
        self.started = self.last = time.monotonic()  # the time before this is not generation

    def done(self, index: int) -> None:
        self.begin()
        self.timed += 1
        self.finished = max(self.finished, index + 1)
        self.last = time.monotonic()

    def eta(self, total: int) -> float | None:
        if not self.timed or self.started is None or self.last is None:
            return None
        per_window = (self.last - self.started) / self.timed
        left = per_window * max(total - self.finished, 0) - (time.monotonic() - self.last)
        return max(left, 0.0)
