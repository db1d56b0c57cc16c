"""What every ``talkgen`` subcommand shares: one clear line per error with its exit code, and reading a
request file. Its own module so that subcommands in other packages can use it without importing `talkgen.cli`.

Exit codes: 0 success, 2 bad input (the request or its media), 1 any other failure.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from talkgen.errors import InternalError, InvalidRequest, TalkgenError, shown

INPUT_ERROR_CODES = frozenset({
    "invalid_request", "missing_media", "conflicting_media", "unsupported_media", "media_unreadable",
    "media_too_large", "forbidden_source", "too_long",
})
CHUNK = 1 << 20


def printable(text: str) -> str:
    """Text any terminal encoding can take (lone surrogates and the like escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(exc: TalkgenError, as_json: bool) -> NoReturn:
    """Report one error; the local user is this machine's operator, so the private detail is shown too."""
    if as_json:
        click.echo(json.dumps(exc.to_dict()))
    else:
        where = f" [{exc.field}]" if exc.field else ""
        click.echo(printable(f"error ({exc.code}{where}): {exc.message}"), err=True)
        if exc.private:
            click.echo(printable(f"  detail: {exc.private}"), err=True)
    sys.exit(2 if exc.code in INPUT_ERROR_CODES else 1)


@contextmanager
def reported_errors(as_json: bool) -> Iterator[None]:
    """Turn failures into one clear line and the exit code; a bug shows its traceback only on request."""
    try:
        yield
    except TalkgenError as exc:
        fail(exc, as_json)
    except Exception as exc:
        if os.environ.get("TALKGEN_DEBUG"):
            raise
        fail(InternalError(f"{type(exc).__name__}: {str(exc)[:300]} (a bug in talkgen or a plugin; set "
                            "TALKGEN_DEBUG=1 for the traceback)"), as_json)


def _request_limit() -> int:
    """The largest request file: room for four base64 inputs at TALKGEN_MAX_BASE64_MB, plus 1 MB."""
    from talkgen.settings import load_settings

    return 4 * (load_settings().max_base64_bytes * 4 // 3 + 4) + CHUNK


def _read_request_bytes(request_file: str, limit: int) -> bytes:
    """The request file's bytes (``-``: stdin), read in chunks up to ``limit``."""
    if request_file == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None or stream.closed:
            raise InvalidRequest("--request - reads the request from stdin, but stdin is closed: pipe the JSON "
                                 "in, or give a file.", field="request")
        return _read_capped(stream, "stdin", limit)
    with open(request_file, "rb") as fh:
        return _read_capped(fh, shown(request_file), limit)


def _read_capped(stream: Any, name: str, limit: int) -> bytes:
    data = bytearray()
    while chunk := stream.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise InvalidRequest(f"The request in {name} is larger than {limit // 1_000_000} MB: send large media "
                                 "as paths or URLs, not base64.", field="request")
    return bytes(data)


def load_request(request_file: str | None) -> dict[str, Any]:
    if not request_file:
        return {}
    where = "stdin" if request_file == "-" else shown(request_file)
    raw = b""
    try:
        raw = _read_request_bytes(request_file, _request_limit())
        data = json.loads(raw.decode("utf-8-sig"))
    except OSError as exc:
        raise InvalidRequest(f"Cannot read the request file {where}: {exc.strerror or exc}.", field="request") from None
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The request in {where} is not UTF-8 text (byte {exc.start}): save it as UTF-8 "
                             "JSON.", field="request") from None
    except json.JSONDecodeError as exc:
        problem = "it is empty" if not raw.strip() else f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InvalidRequest(f"The request in {where} is not valid JSON: {problem}.", field="request") from None
    except RecursionError:
        raise InvalidRequest(f"The request in {where} is nested too deeply to be a request.",
                             field="request") from None
    except ValueError as exc:  # a NUL byte in the file name
        raise InvalidRequest(f"Cannot read the request file {where}: {exc}.", field="request") from None
    # Accept the RunPod envelope {"input": {...}} as well as a bare request.
    if isinstance(data, dict) and set(data) == {"input"}:
        data = data["input"]
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request in {where} must be a JSON object, got {type(data).__name__}.",
                             field="request")
    return data
