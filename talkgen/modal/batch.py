"""A batch on Modal: every request of a JSONL through the GPU class's ``.map``, one record per request.

`run_batch` takes the map step as ``map_fn(requests, outputs, job_ids)`` (on Modal:
``TalkGenWorker().generate.map(..., return_exceptions=True)``; in tests an in-process map), so a failed request
(bad line, talkgen error, crashed or timed-out call) becomes a failed record and never loses the others.
Under the output prefix P: ``P/<key>.mp4``, the status record ``P/<key>.json`` (talkgen.batch.records) and
``P/results.jsonl`` with every record in file order. A rerun skips requests whose record is final.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from talkgen.errors import OutputFailed, TalkgenError, Timeout, shown
from talkgen.modal.shapes import internal_error, is_error

log = logging.getLogger("talkgen.modal")
RESULTS = "results.jsonl"
MapFn = Callable[[list[dict[str, Any]], list[str], list[str]], Iterable[Any]]


@dataclass
class BatchSummary:
    results_url: str
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # of those, final records reused from an earlier run
    failed_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"results": self.results_url, "succeeded": self.succeeded, "failed": self.failed,
                "skipped": self.skipped, "failed_keys": self.failed_keys[:100]}


def response_of(result: Any) -> dict[str, Any]:
    """A map result as a response or error dict: the method's return, or the exception ``.map`` returned."""
    if isinstance(result, dict):
        return result
    if isinstance(result, TalkgenError):
        return result.to_dict()
    if isinstance(result, BaseException):
        if type(result).__name__ == "FunctionTimeoutError":
            return Timeout("The call ran past the app's timeout (TALKGEN_MODAL_TIMEOUT_S); a rerun of the batch "
                           "continues it from its last finished window.", retryable=True).to_dict()
        log.warning("batch call failed: %s: %s", type(result).__name__, str(result)[:300])
        return internal_error(f"the call failed: {type(result).__name__}")
    return internal_error(f"the call returned {type(result).__name__}, not a response")


def run_batch(requests_url: str, output_prefix: str, map_fn: MapFn,
              storage_options: dict[str, Any] | None = None) -> BatchSummary:
    """Run every request of ``requests_url`` and write the records and ``results.jsonl`` under ``output_prefix``.

    Raises `InvalidConfig` when the requests file cannot be read and `OutputFailed` when the results file
    cannot be written; anything a single request does is its record."""
    from talkgen.batch.records import is_final, make_record, read_record, video_url
    from talkgen.batch.requests import read_requests
    from talkgen.batch.storage import joined

    items = read_requests(requests_url, storage_options)
    records: dict[int, dict[str, Any]] = {}
    summary = BatchSummary(results_url=joined(output_prefix, RESULTS))
    todo = []
    for item in items:
        if item.request is None:
            error = item.error.to_dict() if item.error else internal_error("an empty batch item")
            records[item.line] = _written(make_record(item, error, succeeded=False), output_prefix, storage_options)
            continue
        earlier = read_record(output_prefix, item.key, storage_options)
        if is_final(earlier):
            records[item.line] = earlier  # type: ignore[assignment]
            summary.skipped += 1
            continue
        todo.append(item)
    results = map_fn([i.request for i in todo], [video_url(output_prefix, i.key) for i in todo],  # type: ignore[misc]
                     [i.key for i in todo])
    for item, result in zip(todo, results, strict=True):
        response = response_of(result)
        record = make_record(item, response, succeeded=not is_error(response))
        records[item.line] = _written(record, output_prefix, storage_options)
    for record in records.values():
        if record.get("status") == "succeeded":
            summary.succeeded += 1
        else:
            summary.failed += 1
            summary.failed_keys.append(str(record.get("key")))
    _write_results(summary.results_url, [records[line] for line in sorted(records)], storage_options)
    return summary


def _written(record: dict[str, Any], prefix: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Write the status record; a record that cannot be written becomes a failed one (the results file says so)."""
    from talkgen.batch.records import write_record

    try:
        write_record(prefix, record, storage_options)
    except TalkgenError as exc:
        return {**record, "status": "failed", "response": exc.to_dict()}
    return record


def _write_results(url: str, records: list[dict[str, Any]], storage_options: dict[str, Any] | None) -> None:
    import os

    import fsspec

    from talkgen.batch.storage import options_for

    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    try:
        fs, path = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
        if "://" not in url or url.startswith("file://"):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fs.pipe_file(path, blob)
    except Exception as exc:  # storage drivers raise their own types
        raise OutputFailed(f"Cannot write the batch results {shown(url)}: {type(exc).__name__}: "
                           f"{str(exc)[:200]}. Check the output prefix and its credentials.") from exc


MAX_SENT_BYTES = 64_000_000


def check_output(output: str) -> None:
    """The batch prefix must be writable by the containers: the outputs Volume or a storage URL."""
    from talkgen.errors import InvalidConfig
    from talkgen.modal.settings import OUTPUTS_DIR

    if "://" in output and not output.lower().startswith("file://"):
        return
    path = output.removeprefix("file://")
    if path != OUTPUTS_DIR and not path.startswith(OUTPUTS_DIR + "/"):
        raise InvalidConfig(f"--output {shown(output)} is a path on this machine, which the Modal containers cannot "
                            f"write: use {OUTPUTS_DIR}/<name>/ (the outputs Volume; fetch with `modal volume get`) or "
                            "a storage URL such as s3://bucket/prefix/.", field="output")


def local_requests(requests: str) -> str | None:
    """The JSONL's text when it is a file on this machine (sent with the call), else None (read remotely:
    a storage URL, or a path on the outputs Volume)."""
    from pathlib import Path

    from talkgen.errors import InvalidConfig
    from talkgen.modal.settings import OUTPUTS_DIR

    if "://" in requests and not requests.lower().startswith("file://"):
        return None
    path = Path(requests.removeprefix("file://")).expanduser()
    if path.is_file():
        if path.stat().st_size > MAX_SENT_BYTES:
            raise InvalidConfig(f"--requests {shown(requests)} is over {MAX_SENT_BYTES // 1_000_000} MB: put it in "
                                "storage (s3://…) or on the outputs Volume and pass that.", field="requests")
        return path.read_text(encoding="utf-8", errors="replace")
    if str(path).startswith(OUTPUTS_DIR + "/"):
        return None
    raise InvalidConfig(f"--requests {shown(requests)} does not exist: give a JSONL file, a storage URL or a path on "
                        f"the outputs Volume ({OUTPUTS_DIR}/…).", field="requests")
