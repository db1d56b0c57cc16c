"""A batch request's outputs under a prefix P: ``P/<key>.mp4`` and its status record ``P/<key>.json``.

The record (also one line of a results JSONL)::

    {"key", "line", "status": "succeeded" | "failed",
     "response": <TalkResult.to_response()> | <TalkgenError.to_dict()>, "finished_at": ISO-8601 UTC}

It is written whole, after the video: a record that says succeeded means the video is there.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talkgen.batch.requests import BatchItem
from talkgen.batch.storage import joined, options_for
from talkgen.errors import Cancelled, InternalError, OutputFailed, TalkgenError, shown
from talkgen.progress import ProgressCallback

if TYPE_CHECKING:
    from talkgen.service import TalkGen

log = logging.getLogger("talkgen")
SUCCEEDED = "succeeded"
FAILED = "failed"


def video_url(prefix: str, key: str) -> str:
    return joined(prefix, f"{key}.mp4")


def record_url(prefix: str, key: str) -> str:
    return joined(prefix, f"{key}.json")


def make_record(item: BatchItem, response: dict[str, Any], succeeded: bool) -> dict[str, Any]:
    return {"key": item.key, "line": item.line, "status": SUCCEEDED if succeeded else FAILED,
            "response": response, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def is_final(record: dict[str, Any] | None) -> bool:
    """True for a record no retry would change: succeeded, or failed with a non-retryable error."""
    if not record:
        return False
    if record.get("status") == SUCCEEDED:
        return True
    return record.get("status") == FAILED and (record.get("response") or {}).get("retryable") is False


def run_item(item: BatchItem, service: TalkGen, output_prefix: str, progress: ProgressCallback | None = None,
             *, write: bool = True, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run one item into ``output_prefix/<key>.mp4`` and return its record, written to ``<key>.json`` unless
    ``write`` is false. Never raises: a `TalkgenError` is a failed record with its dict, a bug an
    ``internal_error`` (retryable). The service's job id is the key, so with window checkpoints on shared
    storage a rerun continues the video where the last attempt stopped. The prefix decides where the video
    goes: a request's own ``output_url`` / ``network_volume`` are not used. ``cancel`` stops the job at its
    next step (as `TalkGen.generate` takes it).

    A job cancelled because the worker is stopping (SIGTERM) writes no record: its next attempt does.
    """
    if item.error is not None or item.request is None:
        error = item.error or InternalError("The batch item has neither a request nor an error.")
        record = make_record(item, error.to_dict(), succeeded=False)
    else:
        try:
            result = service.generate(item.request, output=video_url(output_prefix, item.key), job_id=item.key,
                                      progress=progress, cancel=cancel)
            record = make_record(item, result.to_response(), succeeded=True)
        except Cancelled as exc:
            return make_record(item, exc.to_dict(), succeeded=False)
        except TalkgenError as exc:
            record = make_record(item, exc.to_dict(), succeeded=False)
        except Exception as exc:  # a bug: reported, and worth another attempt
            log.exception("batch line %d (%s) failed", item.line, item.key)
            error = InternalError(f"{type(exc).__name__}: {str(exc)[:300]} (a bug in talkgen or a plugin)")
            record = make_record(item, error.to_dict(), succeeded=False)
    if write:
        try:
            write_record(output_prefix, record, service.settings.storage_options)
        except TalkgenError as exc:  # the video may be there, but without its record it does not count
            record = make_record(item, exc.to_dict(), succeeded=False)
    return record


def write_record(prefix: str, record: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    """Write ``record`` to ``prefix/<key>.json`` in one piece; returns its URL. Raises `OutputFailed`."""
    import fsspec

    url = record_url(prefix, record["key"])
    blob = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    try:
        fs, path = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
        if "://" not in url or url.startswith("file://"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        _put(fs, path, blob)
    except Exception as exc:  # storage drivers raise their own types
        raise OutputFailed(f"Cannot write the status record {shown(url)}: {type(exc).__name__}: "
                           f"{str(exc)[:200]}. Check the output prefix and its credentials.") from exc
    return url


def _put(fs: Any, path: str, blob: bytes) -> None:
    """The whole file at once: renamed into place on local disks, one PUT on object stores."""
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, blob)  # one PUT: an object is visible whole or not at all
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(prefix: str, key: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The record of ``key`` under ``prefix``; None when there is none (or it is not a record: a half-written
    file cannot exist, but a foreign one might). Storage errors other than a missing file propagate."""
    import fsspec

    url = record_url(prefix, key)
    fs, path = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
    try:
        blob = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(blob)
    except ValueError:
        log.warning("%s is not a JSON record; treating the request as not done", url)
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None
