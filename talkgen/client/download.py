"""Save the video a response points at to a local file: inline data, a presigned or http(s) URL, a
storage URL, or a path this machine can read."""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from talkgen.errors import FetchFailed, InvalidRequest, OutputFailed, shown
from talkgen.sources.url import display_url

CHUNK = 1 << 20


def save_video(response: dict[str, Any], path: str | Path, storage_options: dict[str, Any] | None = None,
               timeout_s: float = 300.0, read_path: Callable[[str], Iterable[bytes]] | None = None) -> Path:
    """Write the response's video to ``path`` (whole file or nothing) and return the path.

    Tried in order: ``video`` (data URI or bare base64, the seed's shape), ``presigned_url``, ``video_url``
    (http(s) with httpx; any other fsspec URL with ``storage_options``, e.g. ``{"s3": {...}}`` or
    s3fs's own keys), ``video_path`` when this machine can read it, else through ``read_path`` (the
    platform's own way to its volume, e.g. a Modal Volume).
    """
    target = Path(path).expanduser()
    if isinstance(response.get("video"), str) and response["video"]:
        with _atomic(target) as out:
            out.write(_decoded(response["video"]))
        return target
    url = response.get("presigned_url") or response.get("video_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        _http_download(url, target, timeout_s)
        return target
    if isinstance(url, str) and url:
        _fsspec_download(url, target, storage_options or {})
        return target
    local = response.get("video_path")
    if isinstance(local, str) and local:
        if not Path(local).is_file() and read_path is not None:
            with _atomic(target) as out:
                for chunk in read_path(local):
                    out.write(chunk)
            return target
        if not Path(local).is_file():
            raise OutputFailed(f"The video is at {shown(local)} on the worker (its disk or network volume), which "
                               "this machine cannot read: set `output_url` in the request (a bucket URL) to "
                               "download it from here, or copy it off the volume.")
        with _atomic(target) as out, open(local, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
        return target
    raise InvalidRequest("The response names no video (`video`, `video_url`, `presigned_url` or `video_path`): "
                         "is it a completed talkgen response?")


def _decoded(video: str) -> bytes:
    payload = video.split(",", 1)[1] if video.startswith("data:") else video
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise OutputFailed("The response's `video` is not valid base64.") from None


def _http_download(url: str, target: Path, timeout_s: float) -> None:
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as reply:
            if reply.status_code >= 400:
                raise FetchFailed(f"Downloading the video from {display_url(url)} failed with HTTP "
                                  f"{reply.status_code}: a presigned URL expires (7 days by default); run the job "
                                  "again if it has.", retryable=reply.status_code >= 500)
            with _atomic(target) as out:
                for chunk in reply.iter_bytes(CHUNK):
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"Downloading the video from {display_url(url)} failed: {type(exc).__name__}: "
                          f"{str(exc)[:200]}.") from None


def _fsspec_download(url: str, target: Path, storage_options: dict[str, Any]) -> None:
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options = storage_options.get(protocol, storage_options)
    options = options if isinstance(options, dict) else {}
    try:
        with fsspec.open(url, "rb", **options) as src, _atomic(target) as out:
            shutil.copyfileobj(src, out, CHUNK)
    except (OSError, ValueError, ImportError) as exc:
        raise FetchFailed(f"Downloading the video from {display_url(url)} failed: {type(exc).__name__}: "
                          f"{str(exc)[:200]}. Give the storage's credentials (the usual env, e.g. AWS_*, or "
                          "storage options).") from None


@contextmanager
def _atomic(target: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``target``, renamed onto it only when the block finishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(temp, "wb") as out:
            yield out
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
