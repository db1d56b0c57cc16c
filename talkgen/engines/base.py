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
    """

    name: str
    healthy: bool

    def generate(self, job: Job) -> None: ...

    def close(self) -> None: ...
