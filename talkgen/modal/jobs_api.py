"""The job API the Modal web endpoint serves, built from injected callables (no Modal import here).

``POST /jobs`` (a request, or ``{"input": {...}}``) → ``{"id", "status": "IN_QUEUE"}``; ``GET /jobs/{id}`` →
``{"id", "status", "progress", "output"}``; ``DELETE /jobs/{id}`` → ``{"id", "status": "CANCELLED"}``. Status
words are RunPod's (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED) so one client reads every platform.
Errors are talkgen error dicts: 400 for a bad request (checked before anything is spawned), 404 for an
unknown id, 502 when the platform refuses the call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from talkgen.errors import InvalidRequest, TalkgenError
from talkgen.modal.shapes import internal_error, is_error, unwrap_input

log = logging.getLogger("talkgen.modal")
JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
CANCELLED_SUFFIX = ":cancelled"


@dataclass(frozen=True)
class CallState:
    """What the platform says about a call: still running, or finished with the method's return value."""

    done: bool = False
    output: dict[str, Any] | None = None
    cancelled: bool = False


Spawn = Callable[[dict[str, Any]], str]  # request → call id
Lookup = Callable[[str], CallState]  # raises LookupError for an unknown id
Cancel = Callable[[str], None]  # raises LookupError for an unknown id


def job_status(job_id: str, state: CallState, progress: Any, cancelled: bool) -> dict[str, Any]:
    """The GET answer for one call. ``cancelled``: this API cancelled it (a call that still finished keeps
    its video: COMPLETED)."""
    out: dict[str, Any] = {"id": job_id, "progress": progress if isinstance(progress, dict) else None}
    if state.cancelled or (cancelled and (not state.done or is_error(state.output))):  # stopped by DELETE
        out["status"] = "CANCELLED"
    elif state.done:
        output = state.output if isinstance(state.output, dict) else internal_error("the call returned no response")
        out["status"] = "FAILED" if is_error(output) else "COMPLETED"
        out["output"] = output
    else:
        out["status"] = "IN_PROGRESS" if out["progress"] else "IN_QUEUE"
    return out


def build_job_api(spawn: Spawn, lookup: Lookup, cancel: Cancel, progress_store: Mapping[str, Any],
                  validate: Callable[[dict[str, Any]], object] | None = None) -> FastAPI:
    """The FastAPI app. ``progress_store`` maps a call id to its latest progress dict (a ``modal.Dict``); the
    API also writes ``<id>:cancelled`` there when it cancels a call. ``validate`` checks a request cheaply
    before it is spawned (default: `TalkRequest.parse`)."""
    if validate is None:
        from talkgen.request import TalkRequest

        validate = TalkRequest.parse
    app = FastAPI(title="talkgen jobs", docs_url=None, redoc_url=None)

    def error(status: int, exc: TalkgenError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=status)

    def known(job_id: str) -> CallState:
        if not JOB_ID.match(job_id):
            raise LookupError(job_id)
        return lookup(job_id)

    def not_found(job_id: str) -> JSONResponse:
        shown_id = job_id if JOB_ID.match(job_id) else "that id"
        return error(404, InvalidRequest(f"No job {shown_id}: use the id POST /jobs returned (results are kept "
                                         "for a limited time).", field="id"))

    @app.post("/jobs")
    async def submit(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            return error(400, InvalidRequest("The body must be a JSON object with the request fields.",
                                             field="input"))
        try:
            inp = unwrap_input(body)
            validate(inp)
        except TalkgenError as exc:
            return error(400, exc)
        try:
            job_id = spawn(inp)
        except Exception as exc:  # the platform refused the call
            log.exception("spawn failed")
            return JSONResponse({**internal_error(f"could not start the call: {type(exc).__name__}")},
                                status_code=502)
        return JSONResponse({"id": job_id, "status": "IN_QUEUE"})

    @app.get("/jobs/{job_id}")
    def status(job_id: str) -> JSONResponse:
        try:
            state = known(job_id)
        except LookupError:
            return not_found(job_id)
        cancelled = bool(progress_store.get(job_id + CANCELLED_SUFFIX))
        return JSONResponse(job_status(job_id, state, progress_store.get(job_id), cancelled))

    @app.delete("/jobs/{job_id}")
    def delete(job_id: str) -> JSONResponse:
        try:
            state = known(job_id)
            if state.done or state.cancelled:  # finished: nothing to cancel, say how it ended
                cancelled = bool(progress_store.get(job_id + CANCELLED_SUFFIX))
                return JSONResponse(job_status(job_id, state, progress_store.get(job_id), cancelled))
            cancel(job_id)
        except LookupError:
            return not_found(job_id)
        try:
            progress_store[job_id + CANCELLED_SUFFIX] = True  # type: ignore[index]
        except Exception:
            log.debug("could not record the cancellation of %s", job_id, exc_info=True)
        return JSONResponse({"id": job_id, "status": "CANCELLED"})

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    return app
