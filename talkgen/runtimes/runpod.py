"""RunPod serverless worker: ``python -m talkgen.runtimes.runpod``.

Accepts the seed template's ``input`` unchanged and returns its output shape (``video`` /
``video_url`` / ``video_path``) plus metadata, or ``{"error", "error_code", "retryable"}``. The
`TalkGen` service, and with it the engine, lives for the whole worker process, so models stay warm.
The SDK's own flags work as documented: ``--test_input '{"input": {...}}'``, ``--rp_serve_api``.

Streaming (HLS segments while the job renders, request field ``stream``) works two ways:

* Every worker: the segments are written next to the video as they are made, and the job's progress on
  ``/status`` carries ``playlist`` and ``segments`` (how many so far) once the first one exists; the final
  response gains ``playlist`` and ``segments``.
* A streaming worker (``TALKGEN_RUNPOD_STREAM=true``; unset, it follows ``TALKGEN_STREAM``) runs
  `stream_handler`, a generator started with ``return_aggregate_stream: True``: ``/stream/{id}`` gets each
  segment event as it happens (`segment_event`), then the final response. RunPod's SDK makes a generator
  handler's result the *list* of everything it yielded, for every request: ``/runsync`` and ``/status``
  answer ``output: [event, …, response]`` (the last item is the response a plain worker returns; a request
  without ``stream`` gives ``[response]``). That is why streaming is a worker setting and not only a request
  field: the SDK picks generator semantics per handler, and a plain worker's response shape stays the seed's.
  On RunPod a failed streaming job is FAILED with its message (the SDK keeps only the ``error`` string of a
  yielded error; the SDK's local ``--rp_serve_api`` server lists the error dict as the output instead).
  ``--test_input`` and RUNPOD_REALTIME_PORT run the plain handler even then: the SDK never iterates a
  generator handler in those modes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from talkgen.errors import InvalidConfig, InvalidRequest, TalkgenError, shown
from talkgen.progress import ProgressEvent, StageThrottle
from talkgen.runtimes.redact import without_server_paths
from talkgen.service import TalkGen
from talkgen.shutdown import cancel_on_signals
from talkgen.sources.url import display_url

log = logging.getLogger("talkgen.runpod")
PROGRESS_MIN_INTERVAL_S = 2.0
STREAM_ENV = "TALKGEN_RUNPOD_STREAM"
SEGMENT_FIELDS = ("event", "job_id", "window", "index", "url", "playlist", "frames", "seconds", "start")
"""What a segment event carries, in this order (the service's ``on_event`` dict; other keys are dropped)."""

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
    raw = job.get("id") or ""
    raw = raw[:1000] if isinstance(raw, str) else shown(raw, 200)
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-._")[:128]
    return cleaned or None


def _describe(inp: dict[str, Any]) -> str:
    """A bounded log line for a request: no base64 payloads, no URL query strings, no huge or deep values."""
    parts = []
    for key, value in list(inp.items())[:50]:
        name = shown(key, 40) if not isinstance(key, str) else key[:40]
        if name.endswith("base64") or name.endswith("base64_2"):
            parts.append(f"{name}=<{len(value) if isinstance(value, str) else shown(value)} chars>")
        elif isinstance(value, str) and "://" in value:
            parts.append(f"{name}={display_url(value[:2000])[:200]}")
        else:
            parts.append(f"{name}={shown(value, 100)}")
    return ", ".join(parts)


def _job_input(job: Any) -> dict[str, Any]:
    """The request in a job: ``job["input"]``, an object or a JSON string of one."""
    if not isinstance(job, dict):
        raise InvalidRequest(f"The job must be an object with an `input` object, got {type(job).__name__}.",
                             field="input")
    inp = job.get("input")
    if isinstance(inp, str):
        try:
            inp = json.loads(inp)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"`input` is a string but not valid JSON: {exc.msg}.", field="input") from None
        except RecursionError:
            raise InvalidRequest("`input` is a JSON string nested too deeply to be a request.",
                                 field="input") from None
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            raise InvalidRequest(f"`input` is a string but not valid JSON: {str(exc)[:200]}.", field="input") from None
    if not isinstance(inp, dict):
        raise InvalidRequest(f"`input` must be an object with the request fields, got {type(inp).__name__}.",
                             field="input")
    return inp


class _ProgressSender:
    """Throttled `runpod.serverless.progress_update` calls: on stage change, else every 2 s; at once when a
    segment is written. Once a job streams, every update also carries ``playlist`` and ``segments``."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.throttle = StageThrottle(PROGRESS_MIN_INTERVAL_S)
        self.last: dict[str, Any] | None = None
        self.stream: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if not self.throttle(event.stage):
            return
        self.last = event.to_dict()
        self._send()

    def segment(self, event: dict[str, Any]) -> None:
        self.stream = {"playlist": event.get("playlist"), "segments": int(event.get("index", 0)) + 1}
        self._send()

    def _send(self) -> None:
        progress = {**(self.last or {"stage": "generate", "fraction": 0.0, "percent": 0, "message": ""}),
                    **self.stream}
        try:
            import runpod

            runpod.serverless.progress_update(self.job, progress)
        except Exception:  # progress must never fail a job
            log.debug("progress_update failed", exc_info=True)


def segment_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event a streaming worker yields for one segment: the service's event, its known fields only."""
    return {key: event[key] for key in SEGMENT_FIELDS if key in event}


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The RunPod handler: one job in, the seed-shaped output or an error dict out (never an exception).

    Error messages leave out this worker's directories (models, work, ComfyUI); the log keeps them, and
    an error's private detail, for the operator.
    """
    return _run(job)


def stream_handler(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The streaming worker's handler (a generator): each segment event as the job writes it, then exactly
    what `handler` returns (the response or the error dict; never an exception)."""
    with contextlib.suppress(TalkgenError):  # a misconfigured worker: the job answers with the error
        cancel_on_signals(service())  # here, in the SDK's (main) thread: the job's thread cannot install it
    for item in events_then_response(lambda on_event, cancel: _run(job, on_event, cancel)):
        if "event" not in item and item.pop("refresh_worker", False):
            _config["refresh_worker"] = True  # the SDK reads this key only from a plain handler's result
        yield item


def events_then_response(
    run: Callable[[Callable[[dict[str, Any]], None], threading.Event], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """Run ``run(on_event, cancel)`` (a job that returns a response dict and never raises) in a thread; yield
    each event it reports, as `segment_event`, when it happens, then its response. If the reader stops early
    (the generator is closed), the job is cancelled (it keeps its checkpoint) and waited for."""
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancel = threading.Event()
    outcome: dict[str, dict[str, Any]] = {}

    def work() -> None:
        try:
            outcome["response"] = run(events.put, cancel)
        except Exception as exc:  # ``run`` should not raise; if it does, the reader still gets an answer
            log.exception("streaming job crashed")
            outcome["response"] = _crashed(type(exc).__name__)
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="talkgen-stream-job", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            yield segment_event(event)
        yield outcome.get("response") or _crashed("the job ended without a response")
    finally:
        if thread.is_alive():
            cancel.set()
            thread.join()


def _run(job: dict[str, Any], on_event: Callable[[dict[str, Any]], None] | None = None,
         cancel: threading.Event | None = None) -> dict[str, Any]:
    raw_id = job.get("id") if isinstance(job, dict) else None
    job_id = raw_id[:80] if isinstance(raw_id, str) else shown(raw_id, 80)
    tg: TalkGen | None = None
    try:
        inp = _job_input(job)
        tg = service()
        cancel_on_signals(tg)  # SIGTERM cancels the job, then the SDK's own shutdown runs
        log.info("job %s: %s", job_id, _describe(inp))
        progress = _ProgressSender(job)

        def segment(event: dict[str, Any]) -> None:
            progress.segment(event)
            if on_event is not None:
                on_event(event)

        result = tg.generate(inp, job_id=_job_id(job), progress=progress, cancel=cancel, on_event=segment)
        log.info("job %s done: %s frames, timings %s", result.job_id, result.frames, result.timings)
        return result.to_response()
    except TalkgenError as exc:
        detail = f" ({exc.private})" if exc.private else ""
        log.warning("job %s failed: %s: %s%s", job_id, exc.code, exc.message, detail)
        out = without_server_paths(exc.to_dict(), tg)
    except Exception as exc:  # a bug: say so plainly, keep the traceback in the log
        log.exception("job %s crashed", job_id)
        out = _crashed(type(exc).__name__)
    if tg is not None and not tg.healthy:
        out["refresh_worker"] = True
    return out


def _crashed(what: str) -> dict[str, Any]:
    return {"error": f"Internal error ({what}) in the worker; its log has the details.",
            "error_code": "internal_error", "retryable": True}


_config: dict[str, Any] = {"handler": handler}
"""What `main` passes to ``runpod.serverless.start``; the SDK reads ``refresh_worker`` from it after each job."""


def streams(tg: TalkGen | None) -> bool:
    """Whether this worker runs the generator handler: TALKGEN_RUNPOD_STREAM, else the TALKGEN_STREAM default."""
    raw = os.environ.get(STREAM_ENV, "").strip().lower()
    if raw:
        if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise InvalidConfig(f"{STREAM_ENV} must be true or false, got {shown(raw, 40)}.", field=STREAM_ENV)
        return raw in {"1", "true", "yes", "on"}
    return bool(getattr(tg.settings, "stream", False)) if tg is not None else False


def main(argv: Sequence[str] | None = None) -> None:
    """Start the worker (the SDK reads its own flags from ``sys.argv``)."""
    import runpod

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # a misconfigured worker says so at start; each job then gets the same invalid_config error
        tg = service()
    except TalkgenError as exc:
        log.error("worker misconfigured: %s: %s", exc.code, exc.message)
        if os.environ.get("TALKGEN_WARMUP", "").strip().lower() in {"1", "true", "yes", "on"}:
            raise SystemExit(1) from None  # warm-up asked for: fail fast, as a failed load would
        tg = None
    if tg is not None and tg.settings.warmup:
        _warm_up(tg)
    try:
        streaming = streams(tg)
    except InvalidConfig as exc:
        log.error("worker misconfigured: %s", exc.message)
        raise SystemExit(1) from None
    if streaming and not _sdk_iterates_generators(sys.argv[1:]):
        log.info("streaming worker in the SDK's local test mode (--test_input) or realtime mode, which never "
                 "iterate a generator handler: running the plain handler (segments are still written)")
    elif streaming:
        log.info("streaming worker: segment events on /stream, outputs are lists ending with the response")
        _config.update(handler=stream_handler, return_aggregate_stream=True)
    runpod.serverless.start(_config)


def _sdk_iterates_generators(args: Sequence[str]) -> bool:
    """Whether the mode ``runpod.serverless.start`` picks runs a generator handler as one (runpod 1.12): the
    job loop and the ``--rp_serve_api`` server do; ``--test_input`` / test_input.json (no RUNPOD_WEBHOOK_GET_JOB)
    and RUNPOD_REALTIME_PORT call the handler once and would answer with a generator object."""
    if "--rp_serve_api" in args:
        return True
    if os.environ.get("RUNPOD_REALTIME_PORT"):
        return False
    if any(arg == "--test_input" or arg.startswith("--test_input=") for arg in args):
        return False
    return bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))


def _warm_up(tg: TalkGen) -> None:
    """TALKGEN_WARMUP: load the engine before the first job; if it cannot start, stop the worker (exit 1)
    with the error's message rather than take jobs that would all fail."""
    log.info("warm-up: loading engine %s before the first job", tg.default_engine)
    try:
        log.info("warm-up: %s", tg.warm_up())
    except TalkgenError as exc:
        detail = f" ({exc.private})" if exc.private else ""
        log.error("warm-up failed, stopping the worker: %s: %s%s", exc.code, exc.message, detail)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
