"""RunPod serverless worker: ``python -m talkgen.runtimes.runpod``.

Accepts the seed template's ``input`` unchanged and returns its output shape (``video`` /
``video_url`` / ``video_path``) plus metadata, or ``{"error", "error_code", "retryable"}``. The
`TalkGen` service, and with it the engine, lives for the whole worker process, so models stay warm.
The SDK's own flags work as documented: ``--test_input '{"input": {...}}'``, ``--rp_serve_api``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from talkgen.errors import InvalidRequest, TalkgenError
from talkgen.progress import ProgressEvent
from talkgen.service import TalkGen
from talkgen.shutdown import cancel_on_signals
from talkgen.sources.url import display_url

log = logging.getLogger("talkgen.runpod")
PROGRESS_MIN_INTERVAL_S = 2.0

_service: TalkGen | None = None
_service_lock = threading.Lock()


def service() -> TalkGen:
    """The worker's one `TalkGen` (engines stay loaded between jobs)."""
    global _service
    with _service_lock:
        if _service is None:
            _service = TalkGen()
        return _service


def reset_service() -> None:
    """Drop the worker's service (tests; settings changed)."""
    global _service
    with _service_lock:
        if _service is not None:
            _service.close()
        _service = None


def _job_id(job: dict[str, Any]) -> str | None:
    raw = str(job.get("id") or "")
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-._")[:128]
    return cleaned or None


def _describe(inp: dict[str, Any]) -> str:
    """A log line for a request that never prints base64 payloads or full URLs' query strings."""
    parts = []
    for key, value in inp.items():
        if key.endswith("base64") or key.endswith("base64_2"):
            parts.append(f"{key}=<{len(str(value))} chars>")
        elif isinstance(value, str) and "://" in value:
            parts.append(f"{key}={display_url(value)}")
        else:
            parts.append(f"{key}={value!r}"[:120])
    return ", ".join(parts)


class _ProgressSender:
    """Throttled `runpod.serverless.progress_update` calls: on stage change, else every 2 s."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.last_stage = ""
        self.last_time = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.stage == self.last_stage and now - self.last_time < PROGRESS_MIN_INTERVAL_S:
            return
        self.last_stage, self.last_time = event.stage, now
        try:
            import runpod

            runpod.serverless.progress_update(self.job, event.to_dict())
        except Exception:  # progress must never fail a job
            log.debug("progress_update failed", exc_info=True)


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The RunPod handler: one job in, the seed-shaped output or an error dict out."""
    inp = job.get("input")
    tg: TalkGen | None = None
    try:
        tg = service()
        cancel_on_signals(tg)  # SIGTERM cancels the job, then the SDK's own shutdown runs
        if isinstance(inp, str):
            try:
                inp = json.loads(inp)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"`input` is a string but not valid JSON: {exc.msg}.") from None
        if not isinstance(inp, dict):
            raise InvalidRequest("`input` must be an object with the request fields.")
        log.info("job %s: %s", job.get("id"), _describe(inp))
        result = tg.generate(inp, job_id=_job_id(job), progress=_ProgressSender(job))
        log.info("job %s done: %s frames, timings %s", result.job_id, result.frames, result.timings)
        return result.to_response()
    except TalkgenError as exc:
        log.warning("job %s failed: %s: %s", job.get("id"), exc.code, exc.message)
        out = exc.to_dict()
    except Exception as exc:  # a bug: say so plainly, keep the traceback in the log
        log.exception("job %s crashed", job.get("id"))
        out = {"error": f"Internal error ({type(exc).__name__}) in the worker; its log has the details.",
               "error_code": "internal_error", "retryable": True}
    if tg is not None and not tg.healthy:
        out["refresh_worker"] = True
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Start the worker (the SDK reads its own flags from ``sys.argv``)."""
    import runpod

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
