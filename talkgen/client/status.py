"""One job's state, in RunPod's words, whatever platform ran it; and the error it carries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from talkgen.errors import ERROR_CODES, Cancelled, InternalError, JobFailed, TalkgenError, Timeout

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
STATUSES = (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})

JOB_FAILED = JobFailed.code
"""The code of a failure the platform reported without a talkgen code (only a message)."""


@dataclass(frozen=True)
class JobStatus:
    """A job as the platform last reported it.

    ``status`` is one of `STATUSES`; ``progress`` is the worker's last progress event (``stage``,
    ``fraction``, ``percent``, ``message``) or None; ``output`` is the talkgen response once COMPLETED;
    ``error`` is a talkgen error dict (``error``, ``error_code``, ``retryable``, …) when the job did not
    complete.
    """

    id: str
    status: str
    progress: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """The job will not change any more (completed, failed, cancelled or timed out)."""
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        """The job completed and ``output`` holds its response."""
        return self.status == COMPLETED

    @property
    def percent(self) -> int | None:
        """The overall percentage of the last progress event, if any."""
        value = (self.progress or {}).get("percent")
        return int(value) if isinstance(value, (int, float)) else None

    def exception(self) -> TalkgenError | None:
        """The error this job ended with, as the matching `TalkgenError` subclass (None unless it failed)."""
        if self.status == COMPLETED or not self.done:
            return None
        return error_from_dict(self.error or default_error(self.id, self.status))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_error(job_id: str, status: str) -> dict[str, Any]:
    """The error of a job that ended without one in the platform's answer."""
    if status == CANCELLED:
        return Cancelled(f"Job {job_id} was cancelled.").to_dict()
    if status == TIMED_OUT:
        return Timeout(f"Job {job_id} ran past the platform's execution timeout and was stopped: raise the "
                       "endpoint's execution timeout or send a shorter request.").to_dict()
    return {"error": f"Job {job_id} failed and the platform gave no reason.", "error_code": JOB_FAILED,
            "retryable": False}


def error_from_dict(data: dict[str, Any]) -> TalkgenError:
    """A talkgen error dict as the exception it stands for (the subclass its ``error_code`` names)."""
    message = str(data.get("error") or "The job failed and the platform gave no reason.")
    code = str(data.get("error_code") or JOB_FAILED)
    retryable = data.get("retryable") if isinstance(data.get("retryable"), bool) else None
    field = data.get("field") if isinstance(data.get("field"), str) else None
    details = data.get("details") if isinstance(data.get("details"), dict) else None
    cls = ERROR_CODES.get(code)
    if cls is not None:
        return cls(message, retryable=retryable, field=field, details=details)
    return TalkgenError(code, message, retryable=retryable, field=field, details=details)


def error_from_text(text: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error dict from a platform's error string, and the output that came with it, if any.

    The output may hold the talkgen fields the platform moved the message out of (``error_code``,
    ``retryable``, ``field``); the string may itself be a JSON error dict, or the RunPod SDK's JSON
    description of an exception the handler raised.
    """
    extra = extra if isinstance(extra, dict) else {}
    if extra.get("error_code"):
        return {**{k: v for k, v in extra.items() if k in ("error_code", "retryable", "field", "details")},
                "error": text or extra.get("error") or ""}
    parsed: Any = None
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict) and parsed.get("error_code"):
        return parsed
    if isinstance(parsed, dict) and "error_message" in parsed:  # the SDK's report of a raised exception
        kind = str(parsed.get("error_type", "")).removeprefix("<class '").removesuffix("'>")
        return InternalError(f"The worker's handler raised {kind or 'an exception'}: "
                             f"{str(parsed.get('error_message'))[:500]}").to_dict()
    return {"error": text, "error_code": JOB_FAILED, "retryable": False}
