"""A batch's requests: one JSON object per line of a JSONL file (local path or fsspec URL), read as a stream."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from talkgen.batch.storage import options_for
from talkgen.errors import InvalidConfig, InvalidRequest, TalkgenError, shown

if TYPE_CHECKING:
    from talkgen.settings import Settings

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_KEY = 128


@dataclass(frozen=True)
class BatchItem:
    """One line of the batch: its 1-based line number, its key (names its output files), and either the
    request or why the line cannot be one."""

    line: int
    key: str
    request: dict[str, Any] | None
    error: TalkgenError | None


def line_limit(settings: Settings | None = None) -> int:
    """The longest line a batch may hold: a request with four base64 inputs at TALKGEN_MAX_BASE64_MB, plus 1 MB
    (as ``talkgen generate --request`` allows)."""
    from talkgen.settings import load_settings

    return 4 * ((settings or load_settings()).max_base64_bytes * 4 // 3 + 4) + CHUNK


def read_requests(url: str, storage_options: dict[str, Any] | None = None, *,
                  max_line_bytes: int | None = None) -> list[BatchItem]:
    """Every line of the JSONL at ``url`` as a `BatchItem` (blank lines skipped, numbering by file line).

    A line that is not a JSON object, is longer than ``max_line_bytes`` (default `line_limit`) or repeats
    an earlier key becomes an item with an `InvalidRequest` naming the line; the others are not affected.
    Raises `InvalidConfig` when the file cannot be opened (missing, unknown protocol, no driver) and lets
    other storage errors through (a network failure is worth a retry).
    """
    import fsspec

    limit = line_limit() if max_line_bytes is None else max_line_bytes
    try:
        opened = fsspec.open(url, "rb", **options_for(url, storage_options))
        stream = opened.open()
    except FileNotFoundError:
        raise InvalidConfig(f"The requests file {shown(url)} does not exist: give the JSONL's path or URL "
                            "(--requests).", field="requests") from None
    except (ValueError, ImportError, PermissionError, IsADirectoryError) as exc:
        raise InvalidConfig(f"The requests file {shown(url)} cannot be opened: {type(exc).__name__}: "
                            f"{str(exc)[:200]}.", field="requests") from None
    items: list[BatchItem] = []
    seen: set[str] = set()
    with stream:
        for number, line in _lines(stream, limit):
            items.append(_item(number, line, limit, seen))
    return items


def shard(items: list[BatchItem], index: int, count: int) -> list[BatchItem]:
    """The ``index``-th of ``count`` shards (0-based): every count-th item from ``index`` on."""
    if count < 1 or not 0 <= index < count:
        raise InvalidConfig(f"Shard index {index} of {count} shards: the index must be 0 to shards-1 and "
                            "shards at least 1.", field="index")
    return items[index::count]


def request_key(request: dict[str, Any], line: int) -> str:
    """The request's ``job_id`` made file-name safe, else ``line-NNNNNN``."""
    job_id = request.get("job_id")
    if isinstance(job_id, str):
        safe = _UNSAFE.sub("_", job_id).lstrip("._-")[:MAX_KEY]
        if safe:
            return safe
    return line_key(line)


def line_key(line: int) -> str:
    return f"line-{line:06d}"


def _lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per non-blank line, read in chunks; None for a line over ``limit`` (not kept)."""
    number, line, over = 0, bytearray(), False
    while chunk := stream.read(CHUNK):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if not over:
                line += chunk[start:] if end < 0 else chunk[start:end]
                if len(line) > limit:
                    over = True
                    line.clear()
            if end < 0:
                break
            number += 1
            if over or line.strip():
                yield number, None if over else bytes(line)
            line, over, start = bytearray(), False, end + 1
    if over or line.strip():
        yield number + 1, None if over else bytes(line)


def _item(number: int, line: bytes | None, limit: int, seen: set[str]) -> BatchItem:
    def bad(message: str) -> BatchItem:
        key = _unique(line_key(number), seen)
        return BatchItem(number, key, None, InvalidRequest(f"Line {number} of the batch: {message}", field="line",
                                                           details={"line": number}))

    if line is None:
        return bad(f"longer than {limit // 1_000_000} MB: send large media as paths or URLs, not base64.")
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        return bad(f"not valid JSON ({str(exc)[:200]}): write one JSON object per line.")
    if not isinstance(request, dict):
        return bad(f"a JSON {type(request).__name__}, not an object: write one request object per line.")
    key = request_key(request, number)
    if key in seen:
        return bad(f"its key {key!r} is taken by an earlier line: give each request its own `job_id`.")
    seen.add(key)
    return BatchItem(number, key, request, None)


def _unique(key: str, seen: set[str]) -> str:
    """``key``, or ``key-2``, ``key-3``, ... when an earlier line took it."""
    candidate, n = key, 1
    while candidate in seen:
        n += 1
        candidate = f"{key}-{n}"
    seen.add(candidate)
    return candidate
