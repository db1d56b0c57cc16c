"""What every platform offers the client: submit, status, cancel (and, if it can, a stream of events)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from talkgen.client.status import JobStatus


@runtime_checkable
class Platform(Protocol):
    """One deployed talkgen: a RunPod endpoint, a Modal app, a Kubernetes namespace.

    ``name`` says which in messages ("RunPod endpoint abc123"). Every method raises a `TalkgenError`
    for what goes wrong (unreachable service, refused credentials, unknown job).
    """

    name: str

    def submit(self, request: dict[str, Any]) -> str:
        """Queue one request; return the job id."""
        ...

    def status(self, job_id: str) -> JobStatus:
        """The job's current state (with its response once COMPLETED)."""
        ...

    def cancel(self, job_id: str) -> JobStatus:
        """Ask the platform to stop the job; return its state after the request."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class Streaming(Protocol):
    """A platform that can also stream a job's events as they happen."""

    def stream(self, job_id: str) -> Iterator[dict[str, Any]]:
        ...
