"""A deployed talkgen Modal app, through its web job API.

``POST /jobs`` (body ``{"input": request}``) → ``{"id", "status"}``; ``GET /jobs/{id}`` → ``{"id",
"status", "progress", "output"}`` in RunPod's status words; ``DELETE /jobs/{id}`` cancels. Errors come
in the talkgen error shape. An app deployed with proxy auth (``requires_proxy_auth=True``) needs a
proxy auth token: ``Modal-Key``/``Modal-Secret`` headers from `KEY_ENV`/`SECRET_ENV`.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from talkgen.client.http import HttpApi, answer, quoted_id, snippet
from talkgen.client.status import COMPLETED, FAILED, STATUSES, JobStatus, default_error, error_from_text
from talkgen.errors import InvalidConfig, MediaTooLarge, OutputFailed

KEY_ENV = "TALKGEN_MODAL_KEY"
SECRET_ENV = "TALKGEN_MODAL_SECRET"


class ModalPlatform:
    """Jobs on the talkgen Modal app whose web endpoint is ``base_url`` (``https://<workspace>--….modal.run``)."""

    def __init__(self, base_url: str, *, modal_key: str | None = None, modal_secret: str | None = None,
                 **http: Any) -> None:
        self.name = f"Modal app at {base_url}"
        key = modal_key or os.environ.get(KEY_ENV, "").strip()
        secret = modal_secret or os.environ.get(SECRET_ENV, "").strip()
        if bool(key) != bool(secret):
            raise InvalidConfig(f"Set both {KEY_ENV} and {SECRET_ENV} (a Modal proxy auth token's id and secret), "
                                "or neither.", field=KEY_ENV if not key else SECRET_ENV)
        headers = {"Modal-Key": key, "Modal-Secret": secret} if key else {}
        self.api = HttpApi(base_url, platform=self.name, headers=headers,
                           auth_hint=f"the app requires proxy auth: set {KEY_ENV} and {SECRET_ENV} to a proxy auth "
                                     "token of its workspace (Modal dashboard → Settings → Proxy Auth Tokens).",
                           **http)

    def close(self) -> None:
        self.api.close()

    def submit(self, request: dict[str, Any]) -> str:
        response = self.api.request("POST", "/jobs", json={"input": request}, idempotent=False)
        if response.status_code == 413:
            raise MediaTooLarge(f"The {self.name} refused the request as too large (HTTP 413): send media as URLs "
                                "or storage paths, not base64.")
        body = self._ok(response, "submit the request")
        job_id = body.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise OutputFailed(f"The {self.name} accepted the request but returned no job id: {snippet(response)}.")
        return job_id

    def status(self, job_id: str) -> JobStatus:
        response = self.api.request("GET", f"/jobs/{quoted_id(job_id)}")
        return _job(job_id, self._ok(response, f"read job {job_id}"))

    def cancel(self, job_id: str) -> JobStatus:
        response = self.api.request("DELETE", f"/jobs/{quoted_id(job_id)}")
        body = self._ok(response, f"cancel job {job_id}")
        return _job(job_id, {"status": "CANCELLED", **body})

    def _ok(self, response: httpx.Response, doing: str) -> dict[str, Any]:
        return answer(response, self.name, doing, "check the URL (the app's web endpoint, printed by `modal "
                      "deploy`) and the job id; Modal keeps results for a limited time.")


def _job(job_id: str, body: dict[str, Any]) -> JobStatus:
    status = str(body.get("status") or "").upper()
    if status not in STATUSES:
        raise OutputFailed(f"The Modal app answered an unknown job status {status!r} for job {job_id}.")
    output = body.get("output")
    progress = body.get("progress") if isinstance(body.get("progress"), dict) else None
    if status == COMPLETED and isinstance(output, dict) and not output.get("error_code"):
        return JobStatus(job_id, COMPLETED, progress=progress, output=output)
    if status == COMPLETED or (isinstance(output, dict) and output.get("error_code")):
        error = error_from_text(str((output or {}).get("error") or ""), output) if isinstance(output, dict) \
            else OutputFailed(f"Job {job_id} completed without a response.").to_dict()
        return JobStatus(job_id, FAILED, progress=progress, error=error)
    if status in (FAILED, "CANCELLED", "TIMED_OUT"):
        error = body.get("error")
        if isinstance(error, dict) and error.get("error"):
            data = error
        elif isinstance(error, str) and error:
            data = error_from_text(error, output)
        else:
            data = default_error(job_id, status)
        return JobStatus(job_id, status, progress=progress, error=data)
    return JobStatus(job_id, status, progress=progress)

