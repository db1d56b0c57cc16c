"""Small shared pieces of the Modal runtime: the request body, job ids, error responses."""

from __future__ import annotations

import re
from typing import Any

from talkgen.errors import InvalidRequest


def unwrap_input(body: Any) -> dict[str, Any]:
    """The request in a body: the request object itself, or ``{"input": {...}}`` as RunPod sends it."""
    if isinstance(body, dict) and set(body) == {"input"}:
        body = body["input"]
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request must be a JSON object with the request fields (or {{\"input\": {{...}}}}), "
                             f"got {type(body).__name__}.", field="input")
    return body


def safe_id(raw: str | None) -> str | None:
    """A platform id as a file-name-safe job id (``fc-01J…`` stays as it is)."""
    if not raw:
        return None
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw[:1000]).strip("-._")[:128]
    return cleaned or None


def is_error(response: Any) -> bool:
    """True for a talkgen error dict (``{"error", "error_code", "retryable"}``)."""
    return isinstance(response, dict) and "error_code" in response


def internal_error(what: str) -> dict[str, Any]:
    """The error dict of a bug or a platform failure; the log has the details."""
    return {"error": f"Internal error ({what}); the worker's log has the details.", "error_code": "internal_error",
            "retryable": True}
