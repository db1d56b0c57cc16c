"""The in-pod batch runner (``talkgen k8s run``): one shard of a JSONL through one warm `TalkGen`.

For each request of its shard (``items[index::count]``) it skips what has a final record already
(succeeded, or failed for good), runs the rest with the key as job id (window checkpoints under
``TALKGEN_CHECKPOINT_URL``, else ``<output>/.checkpoints/``, so a retried pod resumes a half-done video),
writes ``<output>/<key>.mp4`` then ``<output>/<key>.json``, and prints one line per request. SIGTERM stops
the request in progress at its next step (its checkpoint stays, nothing final is written) and the shard
exits `EXIT_RETRYABLE`. Exit codes: `talkgen.batch.exit_codes`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from talkgen.batch import (
    EXIT_CONFIG,
    EXIT_FINAL_FAILURE,
    EXIT_OK,
    EXIT_RETRYABLE,
    BatchItem,
    is_final,
    read_record,
    read_requests,
    run_item,
    shard,
    write_record,
)
from talkgen.batch.storage import joined
from talkgen.errors import InternalError, InvalidConfig, OutputFailed, TalkgenError, shown
from talkgen.progress import ProgressEvent

if TYPE_CHECKING:
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

WORKER_CODES = frozenset({"invalid_config", "engine_unavailable", "gpu_unavailable"})
"""Errors that say the worker, not the request, is wrong: never written as a request's record."""
CHECKPOINTS = ".checkpoints"
PROGRESS_EVERY_S = 30.0


@dataclass
class ShardReport:
    """What one run of a shard did; ``exit_code`` is the process's."""

    index: int
    count: int
    requests: int = 0
    items: int = 0
    succeeded: int = 0
    failed: int = 0
    retryable: int = 0
    skipped: int = 0
    stopped: bool = False
    exit_code: int = EXIT_OK
    error: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Stop(Exception):
    """The shard cannot go on: the worker is misconfigured or broken (``exit_code`` says which)."""

    def __init__(self, error: TalkgenError, exit_code: int) -> None:
        super().__init__(error.message)
        self.error, self.exit_code = error, exit_code


def shard_settings(settings: Settings, output: str) -> Settings:
    """``settings`` with checkpoints under ``<output>/.checkpoints`` unless TALKGEN_CHECKPOINT_URL is set."""
    if settings.checkpoint_url:
        return settings
    return settings.model_copy(update={"checkpoint_url": joined(output, CHECKPOINTS)})


def run_shard(requests: str, output: str, index: int, count: int, settings: Settings, *,
              service: TalkGen | None = None) -> int:
    """Run shard ``index`` of ``count`` of the JSONL at ``requests`` into ``output``; returns the exit code."""
    return execute_shard(requests, output, index, count, settings, service=service).exit_code


def execute_shard(requests: str, output: str, index: int, count: int, settings: Settings, *,
                  service: TalkGen | None = None, echo: Callable[[str], None] | None = None) -> ShardReport:
    """`run_shard` with the whole report; never raises for a `TalkgenError` or a bug (they set its error)."""
    say = echo or _say
    report = ShardReport(index, count)
    owned = service is None
    try:
        output = _checked_output(output)
        items = _read(requests, settings)
        mine = shard(items, index, count)
        report.requests, report.items = len(items), len(mine)
        say(f"[shard {index}/{count}] {len(mine)} of {len(items)} requests from {shown(requests)} -> {shown(output)}")
        if service is None:
            from talkgen.service import TalkGen

            service = TalkGen(shard_settings(settings, output))
        with _stop_on_sigterm(service) as stopping:
            _run_items(mine, service, output, report, stopping, say)
    except _Stop as stop:
        _failed_to_run(report, stop.error, stop.exit_code, say)
    except InvalidConfig as exc:
        _failed_to_run(report, exc, EXIT_CONFIG, say)
    except TalkgenError as exc:
        _failed_to_run(report, exc, EXIT_RETRYABLE if exc.retryable else EXIT_CONFIG, say)
    except Exception as exc:  # a bug or a storage failure: another attempt may do better
        _failed_to_run(report, InternalError(f"{type(exc).__name__}: {str(exc)[:300]}"), EXIT_RETRYABLE, say)
    finally:
        if owned and service is not None:
            service.close()
    if report.error is None:
        report.exit_code = _exit_code(report)
    say(f"[shard {index}/{count}] done: {report.succeeded} succeeded, {report.failed} failed, {report.retryable} "
        f"to retry, {report.skipped} skipped{', stopped' if report.stopped else ''}; exit {report.exit_code}")
    return report


def _run_items(items: list[BatchItem], service: TalkGen, output: str, report: ShardReport,
               stopping: threading.Event, say: Callable[[str], None]) -> None:
    options = service.settings.storage_options
    warm = False
    for done, item in enumerate(items):
        if stopping.is_set() or not service.healthy:
            report.stopped = True
            say(f"[shard {report.index}/{report.count}] stopping: {len(items) - done} requests left for a retry")
            return
        label = f"[shard {report.index}/{report.count}] line {item.line} {item.key}"
        looked = time.perf_counter()
        previous = _previous_record(output, item.key, options, say, label)
        record_s = time.perf_counter() - looked
        if is_final(previous):
            report.skipped += 1
            _count(report, previous)
            say(f"{label}: {previous['status']} before, skipped")
            continue
        if item.request is not None and not warm:
            warm = _warm_up(service, item.request)
        started = time.perf_counter()
        record = run_item(item, service, output, _Progress(label, say), write=False,
                          cancel=stopping)  # a SIGTERM at any time stops it
        ran = time.perf_counter()
        response = record["response"]
        if record["status"] == "failed" and response.get("error_code") == "cancelled" and stopping.is_set():
            report.stopped = True
            say(f"{label}: stopped by SIGTERM after {ran - started:.1f} s; its checkpoint stays for the retry")
            return
        if record["status"] == "failed" and response.get("error_code") in WORKER_CODES:
            raise _Stop(_error_of(response), EXIT_CONFIG if not response.get("retryable") else EXIT_RETRYABLE)
        try:
            write_record(output, record, options)
        except OutputFailed as exc:
            record = {**record, "status": "failed", "response": exc.to_dict()}
        record_s += time.perf_counter() - ran
        seconds = ran - started + record_s  # the warm-up (before the first request) left out
        _count(report, record)
        report.results.append({"key": item.key, "line": item.line, "status": record["status"],
                               "seconds": round(seconds, 3), "record_s": round(record_s, 4),
                               "timings": response.get("timings", {}),
                               "error_code": record["response"].get("error_code")})
        say(f"{label}: {_described(record, seconds)}")


class _Progress:
    """A pod-log line for a long request: at most one every `PROGRESS_EVERY_S` seconds."""

    def __init__(self, label: str, say: Callable[[str], None]) -> None:
        self.label, self.say, self.last = label, say, time.monotonic()

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.say(f"{self.label}: {event.percent}% {event.stage} {event.message}".rstrip())


def _warm_up(service: TalkGen, request: dict[str, Any]) -> bool:
    """Build the engine before the first valid request, so a worker that cannot start writes no request's record;
    False when this request is invalid (its record says why, no engine needed)."""
    try:
        req = service.validate(request)
    except TalkgenError:
        return False
    try:
        service.warm_up(req.engine)
    except TalkgenError as exc:
        raise _Stop(exc, EXIT_RETRYABLE if exc.retryable else EXIT_CONFIG) from None
    return True


def _previous_record(output: str, key: str, options: dict[str, Any], say: Callable[[str], None],
                     label: str) -> dict[str, Any] | None:
    try:
        return read_record(output, key, options)
    except Exception as exc:  # unreadable now: run it again (the result is the same)
        say(f"{label}: could not read its status record ({type(exc).__name__}: {str(exc)[:200]}); running it")
        return None


def _count(report: ShardReport, record: dict[str, Any]) -> None:
    if record["status"] == "succeeded":
        report.succeeded += 1
    elif is_final(record):
        report.failed += 1
    else:
        report.retryable += 1


def _exit_code(report: ShardReport) -> int:
    if report.stopped or report.retryable:
        return EXIT_RETRYABLE
    return EXIT_FINAL_FAILURE if report.failed else EXIT_OK


def _described(record: dict[str, Any], seconds: float) -> str:
    response = record["response"]
    if record["status"] == "succeeded":
        engine = response.get("timings", {}).get("generate")
        where = response.get("video_url") or response.get("video_path")
        return f"succeeded in {seconds:.1f} s" + (f" (engine {engine:.1f} s)" if engine is not None else "") + \
            f" -> {where}"
    kind = "retryable" if response.get("retryable") else "final"
    return f"failed ({response.get('error_code')}, {kind}) in {seconds:.1f} s: {response.get('error')}"


def _error_of(response: dict[str, Any]) -> TalkgenError:
    return TalkgenError(response.get("error_code", "internal_error"), response.get("error", ""),
                        retryable=response.get("retryable"), field=response.get("field"))


def _failed_to_run(report: ShardReport, error: TalkgenError, exit_code: int, say: Callable[[str], None]) -> None:
    report.error, report.exit_code = error.to_dict(), exit_code
    where = f" [{error.field}]" if error.field else ""
    say(f"[shard {report.index}/{report.count}] error ({error.code}{where}): {error.message}")
    if error.private:
        say(f"  detail: {error.private}")


def _read(requests: str, settings: Settings) -> list[BatchItem]:
    from talkgen.batch.requests import line_limit

    return read_requests(requests, settings.storage_options, max_line_bytes=line_limit(settings))


def _checked_output(output: str) -> str:
    """The output prefix: a local directory path or a URL whose protocol fsspec knows."""
    from talkgen.settings import known_protocols

    if not output or "\x00" in output:
        raise InvalidConfig("--output must be a storage prefix such as s3://bucket/batch-1/ or a directory.",
                            field="output")
    try:
        output = known_protocols(output.strip())
    except ValueError as exc:
        raise InvalidConfig(f"--output {shown(output)}: {exc}.", field="output") from None
    if output.lower().endswith((".mp4", ".json", ".jsonl")):
        raise InvalidConfig(f"--output {shown(output)} looks like a file: give the prefix (folder) the videos and "
                            "status records go under, such as s3://bucket/batch-1/.", field="output")
    return output


@contextmanager
def _stop_on_sigterm(service: TalkGen) -> Iterator[threading.Event]:
    """SIGTERM sets the event and cancels the job in progress (`talkgen.shutdown`); the handler is restored
    afterwards. Outside the main thread nothing is installed (the event is never set)."""
    from talkgen.shutdown import cancel_on_signals

    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    cancel_on_signals(service)  # runs the job cancel, then ours
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGTERM, before)


def _say(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()


__all__ = ["ShardReport", "execute_shard", "run_shard", "shard_settings"]
