"""A RunPod serverless endpoint (or any RunPod-compatible API, such as the SDK's ``--rp_serve_api`` server).

RunPod's job API: ``POST /run`` → ``{"id", "status"}``; ``GET /status/{id}`` → ``{"id", "status",
"output"?, "error"?}``; ``GET /stream/{id}`` → ``{"status", "stream": [{"output"}, …]}``;
``POST /cancel/{id}``. A talkgen worker's progress arrives as the ``output`` of an IN_PROGRESS job; a
talkgen error arrives as RunPod's ``error`` string, with ``error_code`` and ``retryable`` left in
``output``. A streaming worker's (``TALKGEN_RUNPOD_STREAM``) output is the list of what it yielded, the
response last: `status` and `wait` unwrap it; `stream` yields the segment events, then the response.

The SDK's local server differs: ``/status`` and ``/stream`` take POST only (GET → 405), the job runs
inside that first POST /status and is forgotten afterwards, a FAILED answer keeps only the message, and
there is no ``/cancel``. This client switches to POST on a 405, waits as long as the job takes, and
remembers the final state of the jobs it saw.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

from talkgen.client.http import HttpApi, answer, quoted_id, submitted_id
from talkgen.client.status import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    IN_QUEUE,
    STATUSES,
    JobStatus,
    error_from_text,
)
from talkgen.errors import InvalidConfig, InvalidRequest, MediaTooLarge, OutputFailed, TalkgenError, shown

RUNPOD_API = "https://api.runpod.ai/v2"
API_KEY_ENV = "RUNPOD_API_KEY"
LOCAL_RUN_TIMEOUT_S = 3600.0
"""How long a POST /status to the SDK's local server may take: the whole job runs inside it."""
_NOT_FOUND = "Job ID not found"  # the local server's answer for a job it does not hold
_KEEP_FINAL = 1000
RUN_BODY_LIMIT = 10_000_000
"""RunPod's limit on a /run body (bytes)."""
VIDEO_FIELDS = ("video", "video_url", "video_path")


class RunPodPlatform:
    """Jobs on ``base_url``: ``https://api.runpod.ai/v2/<endpoint_id>`` or a local/compatible server."""

    def __init__(self, base_url: str, *, api_key: str | None = None, name: str | None = None,
                 poll_s: float = 1.0, **http: Any) -> None:
        self.name = name or f"RunPod API at {base_url}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.api = HttpApi(base_url, platform=self.name, headers=headers,
                           auth_hint=f"set {API_KEY_ENV} to an API key that may use this endpoint "
                                     "(RunPod console → Settings → API Keys).", **http)
        self.poll_s = poll_s
        self._status_method = "GET"
        self._final: dict[str, JobStatus] = {}

    @classmethod
    def endpoint(cls, endpoint_id: str, api_key: str | None = None, **options: Any) -> RunPodPlatform:
        """RunPod's hosted endpoint ``endpoint_id``, with ``api_key`` or ``$RUNPOD_API_KEY``."""
        key = api_key or os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise InvalidConfig(f"Set {API_KEY_ENV} to your RunPod API key (RunPod console → Settings → API "
                                f"Keys) to reach endpoint {endpoint_id}.", field=API_KEY_ENV)
        return cls(f"{RUNPOD_API}/{endpoint_id}", api_key=key, name=f"RunPod endpoint {endpoint_id}", **options)

    def close(self) -> None:
        self.api.close()

    def submit(self, request: dict[str, Any]) -> str:
        size = len(json.dumps({"input": request}, ensure_ascii=False).encode())
        if size > RUN_BODY_LIMIT and self.api.base_url.startswith(RUNPOD_API):
            raise MediaTooLarge(f"The request is {size / 1e6:.1f} MB; RunPod takes at most 10 MB through /run: send "
                                "media as URLs or storage paths, not base64.", field="input")
        response = self.api.request("POST", "/run", json={"input": request}, idempotent=False)
        if response.status_code == 413:
            raise MediaTooLarge(f"The {self.name} refused the request as too large (HTTP 413; RunPod takes "
                                "10 MB through /run): send media as URLs or storage paths, not base64.")
        return submitted_id(self._ok(response, "submit the request"), response, self.name)

    def status(self, job_id: str) -> JobStatus:
        if job_id in self._final:
            return self._final[job_id]
        response = self._read("status", job_id)
        job = self._job(job_id, self._ok(response, f"read job {job_id}"))
        self._remember(job)
        return job

    def _remember(self, job: JobStatus) -> None:
        if job.done:
            if len(self._final) >= _KEEP_FINAL:
                self._final.pop(next(iter(self._final)))
            self._final[job.id] = job

    def cancel(self, job_id: str) -> JobStatus:
        response = self.api.request("POST", f"/cancel/{quoted_id(job_id)}")
        if response.status_code in (404, 405):
            raise InvalidRequest(f"The {self.name} cannot cancel job {job_id} (HTTP {response.status_code} from "
                                 f"/cancel: an unknown or expired job, or an API without /cancel such as the "
                                 "SDK's local --rp_serve_api server).")
        body = self._ok(response, f"cancel job {job_id}")
        self._final.pop(job_id, None)
        return self._job(job_id, {"status": body.get("status") or "CANCELLED", **body})

    def stream(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Each chunk a streaming handler yields, as it arrives, until the job ends.

        A streaming talkgen worker (``TALKGEN_RUNPOD_STREAM=true``) yields each segment event ``{"event":
        "segment", "job_id", "window", "index", "url", "playlist", "frames", "seconds", "start"}``, then the
        job's response as the last chunk (remembered, so `status`/`wait` answer it even where the server
        forgets the job). When the last chunk is a talkgen error dict, or the job failed, its error is raised
        instead. A plain worker streams nothing (poll its status); the SDK's local server refuses to stream it.
        """
        held: Any = None  # a chunk that is not a segment event: the response, an error, if nothing follows it
        while True:
            body = self._ok(self._read("stream", job_id), f"stream job {job_id}")
            if body.get("status") == FAILED and "generator" in str(body.get("error", "")):
                raise InvalidRequest(f"The {self.name} does not stream this job: {body['error']} Poll its "
                                     "status instead (a talkgen worker streams with TALKGEN_RUNPOD_STREAM=true).")
            for chunk in body.get("stream") or []:
                item = chunk.get("output") if isinstance(chunk, dict) else chunk
                if held is not None:
                    yield held
                    held = None
                if isinstance(item, dict) and item.get("event") == "segment":
                    yield item
                else:
                    held = item
            if body.get("status") == COMPLETED:
                if isinstance(held, dict) and (held.get("error_code") or any(held.get(k) for k in VIDEO_FIELDS)):
                    job = _completed(job_id, held, self.name)
                    self._remember(job)
                    error = job.exception()
                    if error is not None:
                        raise error
                if held is not None:
                    yield held
                return
            error = self._job(job_id, body).exception()
            if error is not None:
                raise error
            time.sleep(self.poll_s)

    def _read(self, route: str, job_id: str) -> httpx.Response:
        """GET /route/id; POST where only POST is allowed (the SDK's local server runs the job then)."""
        path = f"/{route}/{quoted_id(job_id)}"
        if self._status_method == "GET":
            response = self.api.request("GET", path)
            if response.status_code != 405:
                return response
            self._status_method = "POST"
        return self.api.request("POST", path, timeout_s=max(LOCAL_RUN_TIMEOUT_S, self.api.timeout_s))

    def _ok(self, response: httpx.Response, doing: str) -> dict[str, Any]:
        return answer(response, self.name, doing, "check the endpoint id, and that the job is younger than "
                      "RunPod's result retention (30 min after it ends).")

    def _job(self, job_id: str, body: dict[str, Any]) -> JobStatus:
        status = str(body.get("status") or "").upper()
        output = body.get("output")
        error = body.get("error")
        if status == FAILED and error == _NOT_FOUND:
            raise InvalidRequest(f"The {self.name} does not know job {job_id}: a finished job is kept 30 min on "
                                 "RunPod, and the SDK's local server forgets a job once its status was read.")
        if status not in STATUSES:
            raise OutputFailed(f"The {self.name} answered an unknown job status {shown(status)} for job {job_id}: "
                               "is the target a RunPod API?")
        if status in (IN_QUEUE, IN_PROGRESS):
            progress = output if isinstance(output, dict) and "stage" in output else None
            return JobStatus(job_id, status, progress=progress)
        if status == COMPLETED:
            return _completed(job_id, output, self.name)
        if isinstance(error, dict) and error.get("error_code"):
            return JobStatus(job_id, status, error=error)
        if error or (isinstance(output, dict) and output.get("error_code")):
            text = error if isinstance(error, str) else str((output or {}).get("error") or error or "")
            return JobStatus(job_id, status, error=error_from_text(text, output))
        failed = JobStatus(job_id, status)
        exc = failed.exception()
        return JobStatus(job_id, status, error=exc.to_dict() if exc else None)


def _completed(job_id: str, output: Any, name: str) -> JobStatus:
    """A COMPLETED answer: the response, or a failure when the output is an error or holds no video. A
    streaming worker's output is the list of what it yielded: the response is its last item."""
    if isinstance(output, list):
        output = output[-1] if output else None
    if isinstance(output, dict) and any(output.get(k) for k in VIDEO_FIELDS):
        return JobStatus(job_id, COMPLETED, output=output)
    if isinstance(output, dict) and output.get("error_code"):
        return JobStatus(job_id, FAILED, error=error_from_text(str(output.get("error") or ""), output))
    if not output:
        error: TalkgenError = OutputFailed(
            f"Job {job_id} completed on the {name} without a response; RunPod drops results above about 20 MB, "
            "so have the worker upload the video instead (request `output_url`, or TALKGEN_OUTPUT_URL on the "
            "worker).")
    else:
        keys = ", ".join(sorted(output)[:8]) if isinstance(output, dict) else type(output).__name__
        error = OutputFailed(f"Job {job_id} completed on the {name}, but its output names no video ({keys}); a "
                             "progress report in its place means a late progress update replaced the result. "
                             "Run the request again.")
    return JobStatus(job_id, FAILED, error=error.to_dict())
