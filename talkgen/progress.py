"""Progress events: what stage a job is in and how far along it is."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Share of the whole job each stage takes, for an overall percentage.
STAGE_WEIGHTS: dict[str, tuple[float, float]] = {
    "validate": (0.00, 0.01),
    "fetch": (0.01, 0.05),
    "prepare": (0.05, 0.08),
    "queue": (0.08, 0.08),  # waiting for the engine: another job is using it
    "load": (0.08, 0.12),
    "generate": (0.12, 0.95),
    "output": (0.95, 1.00),
}


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report. ``fraction`` is within the stage; ``overall`` is for the whole job.

    ``eta_s`` estimates the seconds left, from the measured window times once the first window finished
    (None before that, and outside the generate stage)."""

    job_id: str
    stage: str
    fraction: float
    message: str = ""
    eta_s: float | None = None

    @property
    def overall(self) -> float:
        lo, hi = STAGE_WEIGHTS.get(self.stage, (0.0, 1.0))
        return lo + (hi - lo) * min(max(self.fraction, 0.0), 1.0)

    @property
    def percent(self) -> int:
        return int(round(self.overall * 100))

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"stage": self.stage, "fraction": round(self.fraction, 4),
                                   "percent": self.percent, "message": self.message}
        if self.eta_s is not None:
            data["eta_s"] = round(self.eta_s, 1)
        return data


ProgressCallback = Callable[[ProgressEvent], None]


class StageThrottle:
    """Whether a runtime should pass a progress event on: always on a stage change, else at most every
    ``interval_s`` (platforms rate-limit progress updates; a sampler reports every step)."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.last_stage, self.last_time = "", 0.0

    def __call__(self, stage: str) -> bool:
        now = time.monotonic()
        if stage == self.last_stage and now - self.last_time < self.interval_s:
            return False
        self.last_stage, self.last_time = stage, now
        return True
EventCallback = Callable[[dict[str, object]], None]
"""Receives job events such as ``{"event": "segment", ...}`` (see `talkgen.streaming`)."""
