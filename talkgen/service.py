"""`TalkGen`: request → sources → media → plan → engine → writer → sink, and nothing else."""

from __future__ import annotations

import logging
import math
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talkgen.engine_queue import EngineQueue
from talkgen.errors import (
    Cancelled,
    EngineFailed,
    EngineUnavailable,
    InvalidRequest,
    OutOfMemory,
    TalkgenError,
    TooLong,
    UnsupportedMedia,
)
from talkgen.job import Job
from talkgen.plan import frame_count
from talkgen.progress import EventCallback, ProgressCallback, ProgressEvent
from talkgen.release import release_memory
from talkgen.request import TalkRequest
from talkgen.result import TalkResult
from talkgen.settings import Settings, load_settings
from talkgen.workdirs import make_workdir, sweep_stale

if TYPE_CHECKING:
    from talkgen.engines.base import Engine
    from talkgen.media.kinds import Media
    from talkgen.plugins import Registered

log = logging.getLogger("talkgen")


class TalkGen:
    """Runs talking-video jobs. Create once and reuse: engines are built on first use and kept warm.

    Safe to share between threads: concurrent `generate` calls fetch and prepare their inputs side by side,
    then take turns on the engine in arrival order (progress stage ``queue``: "waiting for the engine").
    """

    def __init__(self, settings: Settings | None = None, engine: str | None = None) -> None:
        self.settings = settings or load_settings()
        self.default_engine = engine or self.settings.engine
        self._engines: dict[str, Any] = {}
        self._queues: dict[str, EngineQueue] = {}
        self._engine_lock = threading.Lock()
        self._active: dict[object, threading.Event] = {}  # cancel flags of the jobs in progress
        self._stopping = False
        sweep_stale(self.settings.work_dir)

    # ---- public API ----
    def validate(self, request: dict[str, Any] | TalkRequest) -> TalkRequest:
        """Check a request without fetching anything; raises `TalkgenError`."""
        req = TalkRequest.parse(request)
        req.max_seconds(self.settings.fps)  # a cap under one frame at this server's rate is refused here
        self._engine_entry(req.engine or self.default_engine, requested=req.engine is not None)
        return req

    def generate(
        self,
        request: dict[str, Any] | TalkRequest,
        *,
        output: str | Path | None = None,
        job_id: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_event: EventCallback | None = None,
        stream_dir: str | Path | None = None,
    ) -> TalkResult:
        """Make the video. ``output`` (a trusted local path or URL) overrides where it is written.

        Streaming (request ``stream``, setting ``TALKGEN_STREAM``, or a trusted ``stream_dir``) also writes a live
        HLS playlist and one segment per window beside the video (``<name>.hls/``, or ``stream_dir``) and calls
        ``on_event`` with ``{"event": "segment", ...}`` once per segment (see `talkgen.streaming`)."""
        from talkgen.outputs import planned_destination

        timings: dict[str, float] = {}
        req = self.validate(request)
        job_id = req.job_id or job_id or uuid.uuid4().hex[:16]
        engine_name = req.engine or self.default_engine
        planned = planned_destination(req, self.settings, job_id, None if output is None else str(output))
        from talkgen.streaming import Store, stream_plan

        folder, planned = stream_plan(req, self.settings, planned, job_id, stream_dir)
        store = None if folder is None else Store(folder, self.settings)
        cancel = cancel or threading.Event()

        def report(stage: str, fraction: float, message: str = "") -> None:
            if progress is not None:
                progress(ProgressEvent(job_id, stage, fraction, message))

        deadline = None if self.settings.job_timeout_s is None else time.monotonic() + self.settings.job_timeout_s
        report("validate", 1.0, "request is valid")
        workdir = make_workdir(self.settings.work_dir, job_id)
        token = object()
        with self._engine_lock:
            self._active[token] = cancel
        try:
            with _timed(timings, "fetch"):
                media = self._fetch(req, workdir, cancel, deadline, report)
            with _timed(timings, "prepare"):
                job = self._prepare(req, job_id, workdir, media, progress, cancel)
            job.deadline = deadline
            job.on_event = on_event
            if store is not None:
                from talkgen.streaming import Segmenter

                job.stream = Segmenter(job, store, on_event)
                job.params["stream"] = "per window"
            report("prepare", 1.0, f"{job.frames} frames at {job.width}x{job.height}")
            video = self._in_turn(engine_name, job, timings, report)
            with _timed(timings, "output"):
                sink_fields = self._deliver(video, planned, job_id)
            _after_delivery(job)
            report("output", 1.0, "done")
        except Cancelled as exc:
            if not self._stopping:
                raise
            raise Cancelled("The worker was stopped while running this job: send it again (with the same job_id "
                            "it continues from its last finished window).", retryable=True) from exc
        finally:
            with self._engine_lock:
                del self._active[token]
            shutil.rmtree(workdir, ignore_errors=True)
            release_memory()  # a long-lived worker's RSS stays at one job's, not the sum of its history
        return TalkResult(
            job_id=job_id, mode=job.mode.value, engine=engine_name, width=job.width, height=job.height,
            fps=job.fps, frames=job.frames, duration=job.audio.duration, seed=job.seed,
            size_bytes=sink_fields.pop("_size"), audio_type=req.resolved_audio_type, params=dict(job.params),
            timings={k: round(v, 3) for k, v in timings.items()},
            playlist=None if job.stream is None else job.stream.playlist_url,
            segments=None if job.stream is None else len(job.stream.segments), **sink_fields,
        )

    def warm_up(self, engine: str | None = None) -> str:
        """Build ``engine`` (default: the service's) now, so the first job does not pay for loading it;
        returns what was done. Raises `TalkgenError` when it cannot start."""
        name = engine or self.default_engine
        started = time.perf_counter()
        self._engine(name)
        return f"engine {name} loaded in {time.perf_counter() - started:.1f} s"

    def cancel_all(self) -> int:
        """Cancel every job in progress (the worker is being stopped); returns how many there were.

        Each job stops at its next check (between download chunks, sampling steps, windows), removes its
        work directory and keeps its checkpoint; it fails with a retryable `cancelled`, so a rerun with the
        same job id continues where it stopped."""
        with self._engine_lock:
            self._stopping = True
            flags = list(self._active.values())
        for flag in flags:
            flag.set()
        return len(flags)

    @property
    def healthy(self) -> bool:
        """False when an engine broke in a way a new worker process would fix."""
        return all(getattr(e, "healthy", True) for e in self._engines.values())

    def close(self) -> None:
        for engine in self._engines.values():
            close = getattr(engine, "close", None)
            if close:
                close()
        self._engines.clear()

    # ---- stages ----
    def _fetch(self, req: TalkRequest, workdir: Path, cancel: threading.Event, deadline: float | None,
               report: Callable[..., None]) -> dict[str, Media]:
        from talkgen.sources import FetchContext, fetch_media

        ctx = FetchContext(self.settings, workdir / "inputs", cancel, deadline)
        refs = req.media_refs()
        media = {}
        for i, (role, ref) in enumerate(refs.items()):
            report("fetch", i / len(refs), f"fetching {ref.field}")
            media[role] = fetch_media(ref, ctx)
            if cancel.is_set():
                raise Cancelled("The job was cancelled.")
        report("fetch", 1.0, "inputs fetched")
        return media

    def _prepare(self, req: TalkRequest, job_id: str, workdir: Path, media: dict[str, Media],
                 progress: ProgressCallback | None, cancel: threading.Event) -> Job:
        from talkgen.media.audio import prepare_audio
        from talkgen.media.probe import probe_av, probe_image

        mode = req.mode
        visual_media = media[mode.visual_role.name]
        if mode.is_video:
            visual = probe_av(visual_media.path, field=visual_media.source, max_pixels=self.settings.max_image_pixels)
            if not visual.has_video:
                raise UnsupportedMedia(
                    f"`{visual_media.source}` has no video stream: V2V needs a video with frames.",
                    field=visual_media.source,
                )
        else:
            visual = probe_image(visual_media.path, self.settings.max_image_pixels, field=visual_media.source)
        width, height = req.output_size(visual.width, visual.height)
        fps = self.settings.fps
        max_seconds = req.max_seconds(fps)

        def frames_for(duration: float) -> int:
            capped = duration if max_seconds is None else min(duration, max_seconds)
            if capped > self.settings.max_duration_s:
                raise TooLong(
                    f"The audio is {capped:.1f} s long; this server allows {self.settings.max_duration_s:g} s "
                    "(TALKGEN_MAX_DURATION_S). Send shorter audio or set `max_duration` to cut it.",
                    field="max_duration",
                )
            return frame_count(duration, fps, max_seconds)

        audio_media = [media[r.name] for r in mode.audio_roles]
        # Decode no further than needed: the caller's cap, or just past the server's (to detect "too long").
        limit = min(max_seconds or math.inf, self.settings.max_duration_s + 1.0)
        separate = None
        if req.separate_vocals:  # before any engine sees the audio: every engine conditions on the same tracks
            from talkgen.separation import speech_separator

            def separating(fraction: float) -> None:
                if progress is not None:  # within "prepare", below the 1.0 reported once the job is ready
                    progress(ProgressEvent(job_id, "prepare", 0.9 * fraction, "separating vocals"))

            separate = speech_separator(self.settings, progress=separating, cancel=cancel,
                                        speakers=len(audio_media))
        audio = prepare_audio(
            [m.path for m in audio_media], req.resolved_audio_type, workdir / "audio", frames_for, fps,
            fields=[m.source for m in audio_media], decode_limit_s=limit, separate=separate,
        )
        boxes = req.speaker_boxes
        w, h = visual.width, visual.height
        if mode.speakers == 2 and boxes is None:
            boxes = [[0, 0, w / 2, h], [w / 2, 0, w, h]]
        elif boxes is not None and any(x1 > w or y1 > h for _, _, x1, y1 in boxes):
            raise InvalidRequest(
                f"`speaker_boxes` {boxes} reach outside the {w}x{h} input: give boxes in its pixels.",
                field="speaker_boxes",
            )
        return Job(
            id=job_id, request=req, mode=mode, settings=self.settings, workdir=workdir, media=media,
            visual=visual, audio=audio, width=width, height=height, fps=fps,
            seed=req.seed if req.seed is not None else random.randrange(2**32), speaker_boxes=boxes,
            on_progress=progress, cancel=cancel, params={"separate_vocals": audio.separated},
        )

    def _in_turn(self, engine_name: str, job: Job, timings: dict[str, float], report: Callable[..., None]) -> Path:
        """Wait for the engine (first come, first served), start it if needed, and render the job on it."""

        def waiting(ahead: int) -> None:
            report("queue", 0.0, f"waiting for the engine: {ahead} job{'s' if ahead > 1 else ''} ahead")

        queued = time.perf_counter()
        with self._queue(engine_name).turn(waiting, job.check_cancelled):
            timings["queue"] = time.perf_counter() - queued
            with _timed(timings, "load"):
                engine = self._engine(engine_name)
            report("load", 1.0, f"engine {engine_name} ready")
            with _timed(timings, "generate"):
                return self._run_engine(engine, job)

    def _engine_entry(self, name: str, requested: bool = True) -> Registered:
        from talkgen.plugins import get_registry

        engines = get_registry().engines
        if name not in engines:
            known = ", ".join(sorted(engines)) or "none installed"
            if not requested:  # the operator's default, not the caller's mistake
                raise EngineUnavailable(
                    f"The default engine {name!r} (TALKGEN_ENGINE) is not installed: install it (e.g. "
                    f"pip install 'talkgen[{name}]') or set TALKGEN_ENGINE to one of: {known}.",
                    retryable=False,
                )
            raise InvalidRequest(
                f"Unknown engine {name!r}: use one of {known} (see `talkgen plugins`).", field="engine"
            )
        return engines[name]

    def _queue(self, name: str) -> EngineQueue:
        with self._engine_lock:
            return self._queues.setdefault(name, EngineQueue())

    def _engine(self, name: str) -> Engine:
        with self._engine_lock:
            engine = self._engines.get(name)
            if engine is not None and not getattr(engine, "healthy", True):
                log.warning("engine %s is unhealthy; rebuilding it", name)
                self._engines.pop(name).close()
                engine = None
            if engine is None:
                factory = self._engine_entry(name).obj
                try:
                    engine = factory(self.settings)
                except TalkgenError:
                    raise
                except Exception as exc:
                    log.exception("engine %s failed to start", name)
                    raise EngineUnavailable(f"Engine {name!r} could not start: {type(exc).__name__}: {str(exc)[:300]}.",
                                            private=str(exc)) from exc
                self._engines[name] = engine
            return engine

    def _run_engine(self, engine: Engine, job: Job) -> Path:
        from talkgen.media.writer import VideoWriter

        path = job.workdir / "output.mp4"
        writer = VideoWriter(path, job.width, job.height, job.fps, soundtrack=job.audio.soundtrack,
                             total_frames=job.frames, keep_parts=job.stream is not None)
        job.writer = writer
        try:
            engine.generate(job)
            job.check_cancelled()
            if writer.frames_written != job.frames:
                raise EngineFailed(
                    f"Engine {engine.name!r} produced {writer.frames_written} frames, expected {job.frames}."
                )
            writer.close()
            if job.stream is not None:
                job.stream.finish(writer.tail)
        except TalkgenError:
            writer.abort()
            raise
        except MemoryError as exc:
            writer.abort()
            engine.healthy = False
            raise OutOfMemory("The engine ran out of memory: use a smaller size or shorter audio.") from exc
        except Exception as exc:
            writer.abort()
            log.exception("engine %s failed on job %s", engine.name, job.id)
            raise EngineFailed(f"Engine {engine.name!r} failed: {type(exc).__name__}: {str(exc)[:300]}",
                               private=str(exc)) from exc
        return path

    def _deliver(self, video: Path, planned: str | None, job_id: str) -> dict[str, Any]:
        from talkgen.outputs import choose_destination, deliver

        size = video.stat().st_size
        destination = choose_destination(planned, size, self.settings, job_id)
        _, fields = deliver(video, destination, self.settings)
        return {**fields, "_size": size}


def _after_delivery(job: Job) -> None:
    """Run what waited for the video to be safe (removing the checkpoint); failures only cost storage."""
    for action in job.on_delivered:
        try:
            action()
        except Exception:
            log.warning("cleanup after delivering job %s failed", job.id, exc_info=True)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = time.perf_counter() - start


def generate(request: dict[str, Any] | TalkRequest, **kwargs: Any) -> TalkResult:
    """One-shot helper: ``talkgen.generate({...})`` with settings from the environment."""
    return _default().generate(request, **kwargs)


_default_instance: TalkGen | None = None
_default_lock = threading.Lock()


def _default() -> TalkGen:
    """The process's shared instance, created once even when threads race for it."""
    global _default_instance
    with _default_lock:
        if _default_instance is None:
            _default_instance = TalkGen()
        return _default_instance


__all__ = ["TalkGen", "generate"]
