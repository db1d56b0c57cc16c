"""A deployed talkgen Modal app, through its web job API.

``POST /jobs`` (body ``{"input": request}``) → ``{"id", "status"}``; ``GET /jobs/{id}`` → ``{"id",
"status", "progress", "output"}`` in RunPod's status words; ``DELETE /jobs/{id}`` cancels. Errors come
in the talkgen error shape. An app deployed with proxy auth (``requires_proxy_auth=True``) needs a
proxy auth token: ``Modal-Key``/``Modal-Secret`` headers from `KEY_ENV`/`SECRET_ENV`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from talkgen.client.http import HttpApi, answer, quoted_id, submitted_id
from talkgen.client.status import COMPLETED, FAILED, STATUSES, TERMINAL, JobStatus, default_error, error_from_text
from talkgen.errors import InvalidConfig, MediaTooLarge, OutputFailed, shown

KEY_ENV = "TALKGEN_MODAL_KEY"
SECRET_ENV = "TALKGEN_MODAL_SECRET"


class ModalPlatform:
    """Jobs on the talkgen Modal app whose web endpoint is ``base_url`` (``https://<workspace>--….modal.run``)."""

    def __init__(self, base_url: str, *, modal_key: str | None = None, modal_secret: str | None = None,
                 outputs_volume: str | None = None, **http: Any) -> None:
        self.name = f"Modal app at {base_url}"
        self.outputs_volume = outputs_volume
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
        return submitted_id(self._ok(response, "submit the request"), response, self.name)

    def status(self, job_id: str) -> JobStatus:
        response = self.api.request("GET", f"/jobs/{quoted_id(job_id)}")
        return _job(job_id, self._ok(response, f"read job {job_id}"))

    def cancel(self, job_id: str) -> JobStatus:
        response = self.api.request("DELETE", f"/jobs/{quoted_id(job_id)}")
        body = self._ok(response, f"cancel job {job_id}")
        return _job(job_id, {"status": "CANCELLED", **body})

    def read_path(self, path: str) -> Iterator[bytes]:
        """The bytes of a ``video_path`` on the app's outputs Volume (``/outputs/…``), through Modal's API.

        Needs a Modal token (``modal token new``, or MODAL_TOKEN_ID/MODAL_TOKEN_SECRET). The Volume is
        ``outputs_volume``, else TALKGEN_MODAL_OUTPUTS_VOLUME, else talkgen's default (talkgen-outputs).
        """
        from talkgen.modal.settings import OUTPUTS_DIR, load_modal_settings

        if not path.startswith(OUTPUTS_DIR + "/"):
            raise OutputFailed(f"The video is at {shown(path)} inside the Modal container, not on the outputs Volume "
                               f"({OUTPUTS_DIR}/…): set `output_url` in the request (a bucket URL) to fetch it.")
        name = self.outputs_volume or load_modal_settings().outputs_volume
        try:
            import modal

            yield from modal.Volume.from_name(name).read_file(path.removeprefix(OUTPUTS_DIR + "/"))
        except ImportError:
            raise InvalidConfig("Reading the video from the Modal outputs Volume needs the modal package: "
                                "pip install 'talkgen[modal]'.") from None
        except Exception as exc:
            if type(exc).__name__ == "AuthError":
                raise InvalidConfig(f"Reading {shown(path)} from the Modal Volume {name!r} needs a Modal token: run "
                                    "`modal token new` or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (or have the "
                                    "job write to a bucket with `output_url`).") from None
            if type(exc).__name__ == "NotFoundError":
                raise OutputFailed(f"{shown(path)} is not on the Modal Volume {name!r}: {str(exc)[:200]}") from None
            raise

    def _ok(self, response: httpx.Response, doing: str) -> dict[str, Any]:
        return answer(response, self.name, doing, "check the URL (the app's web endpoint, printed by `modal "
                      "deploy`) and the job id; Modal keeps results for a limited time.")


def _job(job_id: str, body: dict[str, Any]) -> JobStatus:
    """An answer of GET /jobs/{id}: a failed job's error is its ``output`` (a talkgen error dict), or an
    ``error`` string or dict."""
    status = str(body.get("status") or "").upper()
    if status not in STATUSES:
        raise OutputFailed(f"The Modal app answered an unknown job status {shown(status)} for job {job_id}.")
    output = body.get("output")
    progress = body.get("progress") if isinstance(body.get("progress"), dict) else None
    failed = isinstance(output, dict) and bool(output.get("error_code"))
    if status == COMPLETED and isinstance(output, dict) and output and not failed:
        return JobStatus(job_id, COMPLETED, progress=progress, output=output)
    if status not in TERMINAL:
        return JobStatus(job_id, status, progress=progress)
    status = FAILED if status == COMPLETED else status  # COMPLETED with an error, or with nothing
    error = body.get("error")
    if failed:
        data = error_from_text(str(output.get("error") or ""), output)  # type: ignore[union-attr]
    elif isinstance(error, dict) and error.get("error"):
        data = error
    elif isinstance(error, str) and error:
        data = error_from_text(error, output)
    elif body.get("status") == COMPLETED:
        data = OutputFailed(f"Job {job_id} completed without a response.").to_dict()
    else:
        data = default_error(job_id, status)
    return JobStatus(job_id, status, progress=progress, error=data)

