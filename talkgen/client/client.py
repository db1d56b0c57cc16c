"""`Client`: submit a talkgen request to a deployed platform, follow it, get its response, cancel it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from talkgen.client.base import Platform, Streaming
from talkgen.client.status import JobStatus
from talkgen.errors import InvalidRequest, Timeout

ProgressHandler = Callable[[JobStatus], None]
DEFAULT_POLL_S = 2.0
MAX_POLL_S = 10.0


class Client:
    """One deployed talkgen. Same request, same response, whatever the platform behind it.

        with connect("runpod:abc123") as client:
            job_id = client.submit({"image_url": ..., "wav_url": ...})
            response = client.wait(job_id, on_progress=lambda s: print(s.status, s.percent))
            client.save(response, "out.mp4")
    """

    def __init__(self, platform: Platform, target: str = "") -> None:
        self.platform = platform
        self.target = target or platform.name

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.platform.close()

    def submit(self, request: dict[str, Any], *, validate: bool = True) -> str:
        """Queue ``request`` (a talkgen request dict, or RunPod's ``{"input": {...}}``); return the job id.

        With ``validate`` the request is checked against this talkgen's request schema first, so a typo
        fails here rather than on a GPU; media paths are not checked (they are the worker's paths).
        """
        request = _bare(request)
        if validate:
            from talkgen.request import TalkRequest

            TalkRequest.parse(request)
        return self.platform.submit(request)

    def status(self, job_id: str) -> JobStatus:
        """The job's state now."""
        return self.platform.status(job_id)

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = DEFAULT_POLL_S,
             on_progress: ProgressHandler | None = None) -> dict[str, Any]:
        """Poll until the job ends; return its response, or raise the error it ended with.

        ``on_progress`` gets each `JobStatus` that differs from the last one seen. ``timeout`` (seconds)
        raises a `Timeout` error, and leaves the job running. Polling starts at ``poll_s`` and slows to
        `MAX_POLL_S` while nothing changes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, last = poll_s, None
        while True:
            job = self.platform.status(job_id)
            if job != last:
                delay = poll_s
                if on_progress is not None:
                    on_progress(job)
            last = job
            if job.done:
                error = job.exception()
                if error is not None:
                    raise error
                return dict(job.output or {})
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"Job {job_id} on the {self.platform.name} was still {job.status} after {timeout:g} s; "
                              "it keeps running: wait again, or cancel it.", details={"job_id": job_id})
            pause = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, max(MAX_POLL_S, poll_s))

    def run(self, request: dict[str, Any], timeout: float | None = None, poll_s: float = DEFAULT_POLL_S,
            on_progress: ProgressHandler | None = None, *, validate: bool = True) -> dict[str, Any]:
        """`submit` then `wait`: the response of one request."""
        return self.wait(self.submit(request, validate=validate), timeout, poll_s, on_progress)

    def cancel(self, job_id: str) -> JobStatus:
        """Ask the platform to stop the job; its state after the request."""
        return self.platform.cancel(job_id)

    def stream(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job's streamed events, where the platform streams (RunPod's /stream): each HLS segment event
        (``{"event": "segment", "window", "index", "url", "playlist", "frames", "seconds", ...}``) as the worker
        writes it, then the response as the last item; a failed job raises its error."""
        if not isinstance(self.platform, Streaming):
            raise InvalidRequest(f"The {self.platform.name} does not stream job events: poll `status` instead.")
        return self.platform.stream(job_id)

    def save(self, response: dict[str, Any], path: str | Path,
             storage_options: dict[str, Any] | None = None) -> Path:
        """Write the response's video to a local file (see `talkgen.client.download.save_video`); a
        ``video_path`` on the platform's volume is read through the platform where it can (Modal).
        ``storage_options`` default to the platform's own (Kubernetes' staging storage)."""
        from talkgen.client.download import save_video

        if storage_options is None:
            storage_options = getattr(self.platform, "storage_options", None)
        return save_video(response, path, storage_options, read_path=getattr(self.platform, "read_path", None))


def _bare(request: Any) -> dict[str, Any]:
    if isinstance(request, dict) and set(request) == {"input"}:
        request = request["input"]
    if not isinstance(request, dict):
        raise InvalidRequest(f"The request must be a JSON object, got {type(request).__name__}.", field="input")
    return request


def connect(target: str, **options: Any) -> Client:
    """A `Client` for ``target`` (see `talkgen.client.target`): ``runpod:<endpoint_id>``,
    ``runpod:http://127.0.0.1:8000``, ``modal:https://<workspace>--talkgen-api.modal.run``, ``k8s:<namespace>``.

    Options: ``api_key`` (RunPod; default ``$RUNPOD_API_KEY``), ``modal_key``/``modal_secret`` (Modal proxy
    auth; default ``$TALKGEN_MODAL_KEY``/``$TALKGEN_MODAL_SECRET``), ``retries`` (4), ``backoff_s`` (1.0),
    ``timeout_s`` (30, per HTTP request); Kubernetes: see `talkgen.client.k8s.K8sPlatform`.
    """
    from talkgen.client.target import platform_for

    return Client(platform_for(target, **options), target)
