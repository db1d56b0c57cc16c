"""What the Modal GPU class does, kept out of the app file and free of Modal imports (testable in-process).

`Worker.start` builds one `TalkGen` per container (``@modal.enter``); `Worker.generate` takes the same request
dict as every runtime and returns the RunPod runtime's response: the response fields, or the talkgen error dict
(never an exception for a `TalkgenError`). The video always goes to storage, never through the call: the
request's ``output_url`` / ``network_volume`` (the outputs Volume), else ``TALKGEN_OUTPUT_URL``, else the outputs
Volume as ``/outputs/<job id>.mp4`` (TALKGEN_VOLUME_DIR, where ``network_volume: true`` writes too).
Progress goes to a key-value store (a ``modal.Dict``) under the call id; once a streaming job (request
``stream``) has written its first HLS segment, each record also carries ``playlist`` and ``segments`` (how many
so far), so the job API shows the playlist while the job runs. `Worker.generate_stream` yields each segment
event as it happens, then the response (the app's generator method ``generate_stream``).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from talkgen.errors import TalkgenError
from talkgen.modal.settings import ModalSettings
from talkgen.modal.shapes import internal_error, is_error, safe_id, unwrap_input
from talkgen.progress import ProgressEvent, StageThrottle
from talkgen.service import TalkGen

log = logging.getLogger("talkgen.modal")
PROGRESS_MIN_INTERVAL_S = 2.0


class ProgressWriter:
    """Throttled progress records in ``store[key]``: on a stage change, else every 2 s. Never fails a job."""

    def __init__(self, store: MutableMapping[str, Any], key: str) -> None:
        self.store, self.key = store, key
        self.throttle = StageThrottle(PROGRESS_MIN_INTERVAL_S)
        self.last: dict[str, Any] = {"stage": "generate", "fraction": 0.0, "percent": 0, "message": ""}
        self.stream: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if not self.throttle(event.stage):
            return
        self.write(event.to_dict())

    def segment(self, event: dict[str, Any]) -> None:
        """A segment was written: the record now names the playlist and the segment count (written at once)."""
        self.stream = {"playlist": event.get("playlist"), "segments": int(event.get("index", 0)) + 1}
        self.write(self.last)

    def write(self, value: dict[str, Any]) -> None:
        self.last = value
        try:
            self.store[self.key] = {**value, **self.stream}
        except Exception:  # progress must never fail a job
            log.debug("progress write failed", exc_info=True)


class Worker:
    """One per container. ``commit`` persists the outputs Volume after each call (``Volume.commit``); the
    service is built from the ``TALKGEN_*`` environment unless one is given."""

    def __init__(self, settings: ModalSettings | None = None, *, progress_store: MutableMapping[str, Any] | None = None,
                 commit: Callable[[], None] | None = None, service: TalkGen | None = None) -> None:
        from talkgen.modal.settings import load_modal_settings

        self.settings = settings or load_modal_settings()
        self.progress_store = progress_store
        self.commit = commit
        self.service: TalkGen | None = service  # given: used as it is (tests, an embedding program)
        self.config_error: TalkgenError | None = None

    def start(self) -> None:
        """Build the service; with TALKGEN_WARMUP load the engine now. A failure there raises (the container
        does not start, as a RunPod worker exits): better than taking calls that would all fail."""
        from talkgen.shutdown import cancel_on_signals

        try:
            self.service = self.service or TalkGen()
        except TalkgenError as exc:
            log.error("worker misconfigured: %s: %s", exc.code, exc.message)
            if _env_true("TALKGEN_WARMUP"):
                raise
            self.config_error = exc  # each call answers with it
            return
        cancel_on_signals(self.service)  # SIGTERM (container stopped): the running job keeps its checkpoint
        if self.settings.gpu_count > 1:  # each call's torchrun ranks load the engine; this process must not
            log.info("%d GPUs per container: the engine loads in each call's ranks", self.settings.gpu_count)
        elif self.service.settings.warmup:
            log.info("warm-up: %s", self.service.warm_up())

    def stop(self) -> None:
        if self.service is not None:
            self.service.close()

    @property
    def healthy(self) -> bool:
        """False when an engine broke in a way only a new container fixes (the app then stops taking inputs)."""
        return self.service is None or self.service.healthy

    def generate_stream(self, request: Any, *, output: str | None = None, job_id: str | None = None,
                        call_id: str | None = None) -> Iterator[dict[str, Any]]:
        """`generate`, streamed: each segment event ``{"event": "segment", ...}`` as the job writes it, then the
        response or the error dict (exactly what `generate` returns). Closing the generator early cancels the
        job. A request without ``stream`` yields only the response."""
        from talkgen.runtimes.runpod import events_then_response

        yield from events_then_response(lambda on_event, cancel: self.generate(
            request, output=output, job_id=job_id, call_id=call_id, cancel=cancel, on_event=on_event))

    def generate(self, request: Any, *, output: str | None = None, job_id: str | None = None,
                 call_id: str | None = None, cancel: threading.Event | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """One request → the response dict or the error dict. ``output`` is the trusted caller's destination
        (the batch entrypoint's); ``job_id`` defaults to the call id; ``on_event`` gets each segment event of a
        streaming job."""
        from talkgen.runtimes.redact import without_server_paths

        tg = self.service
        progress = None if self.progress_store is None or not call_id else ProgressWriter(self.progress_store, call_id)

        def segment(event: dict[str, Any]) -> None:
            if progress is not None:
                progress.segment(event)
            if on_event is not None:
                on_event(event)

        try:
            inp = unwrap_input(request)
            if tg is None:
                if self.config_error is None:
                    self.start()
                    tg = self.service
                if tg is None:
                    raise self.config_error  # type: ignore[misc]
            job_id = safe_id(job_id) or safe_id(call_id) or uuid.uuid4().hex[:16]
            req = tg.validate(inp)
            destination = output or self.destination(tg, req.output_url or req.network_volume, req.job_id or job_id)
            if self.settings.gpu_count > 1:
                from talkgen.modal.multi_gpu import generate_on_gpus

                response = generate_on_gpus(inp, destination, req.job_id or job_id, self.settings.gpu_count,
                                            progress, cancel, on_event=segment)
            else:
                response = tg.generate(inp, output=destination, job_id=job_id, progress=progress,
                                       cancel=cancel, on_event=segment).to_response()
            if is_error(response):  # rank 0's error (multi-GPU): redacted as any other
                log.warning("call %s failed: %s: %s", call_id, response.get("error_code"), response.get("error"))
                response = without_server_paths(dict(response), tg)
            else:
                log.info("job %s done: %s", response.get("job_id"), response.get("timings"))
        except TalkgenError as exc:
            detail = f" ({exc.private})" if exc.private else ""
            log.warning("call %s failed: %s: %s%s", call_id, exc.code, exc.message, detail)
            response = without_server_paths(exc.to_dict(), tg)
        except Exception as exc:  # a bug: say so plainly, keep the traceback in the log
            log.exception("call %s crashed", call_id)
            response = internal_error(type(exc).__name__)
        finally:
            self._commit()
        if progress is not None and "error_code" not in response:
            progress.write({"stage": "output", "fraction": 1.0, "percent": 100, "message": "done"})
        return response

    def destination(self, tg: TalkGen, requested: object, job_id: str) -> str | None:
        """Where the video goes when the caller named no trusted output: the request's own choice (checked
        by the service as untrusted), else TALKGEN_OUTPUT_URL, else the outputs Volume. Never inline."""
        from talkgen.outputs import with_name

        if requested:
            return None
        if tg.settings.output_url:
            return with_name(tg.settings.output_url, job_id)
        return os.path.join(tg.settings.volume_dir, f"{job_id}.mp4")

    def _commit(self) -> None:
        if self.commit is None:
            return
        try:
            self.commit()
        except Exception:  # a failed commit is retried by Modal's background commits; the log says so
            log.warning("committing the outputs volume failed", exc_info=True)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
