"""The engine contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from talkgen.job import Job


@runtime_checkable
class Engine(Protocol):
    """Produces exactly ``job.frames`` frames into ``job.writer``, window by window.

    An engine never prints and never knows which runtime called it: it reports through
    ``job.report(...)``, checks ``job.check_cancelled()`` between windows, and raises
    `talkgen.errors.TalkgenError` subclasses (EngineFailed, OutOfMemory, …). Set ``healthy`` to False
    when the engine cannot run another job (the service then rebuilds it; runtimes may recycle the worker).
    `TalkGen` runs one job at a time per engine instance (its `EngineQueue`), so an engine may keep state
    between the calls of one job without locks. Work that must wait until the video is delivered (removing
    a checkpoint) goes into ``job.on_delivered``.
    """

    name: str
    healthy: bool

    def generate(self, job: Job) -> None: ...

    def close(self) -> None: ...
