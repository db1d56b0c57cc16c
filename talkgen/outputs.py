"""Output sinks: inline data URI, a local path (network volume, CLI), or any fsspec URL (s3://, gs://, …).

Which one runs is decided once, in `choose_destination`; the sinks only write. Built-in sinks register
through the `register_sinks` hook like plugin sinks do.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Protocol, runtime_checkable

from talkgen.errors import ForbiddenSource, InvalidRequest, OutputFailed, shown
from talkgen.hookspecs import hookimpl
from talkgen.request import TalkRequest
from talkgen.settings import Settings
from talkgen.storage_url import normalised, protocol_of, reason

INLINE = "inline"
CHUNK = 3 * 1024 * 1024  # a multiple of 3, so base64 chunks join without padding in the middle
MIME = "video/mp4"


@runtime_checkable
class Sink(Protocol):
    """Writes the finished mp4 to a destination and returns the response fields that point at it."""

    name: str
    description: str

    def handles(self, destination: str) -> bool: ...

    def deliver(self, video: Path, destination: str, settings: Settings) -> dict[str, str]: ...


def _is_local(destination: str) -> bool:
    return "://" not in destination or destination[:7].lower() == "file://"


def _local_path(destination: str) -> Path:
    if destination[:7].lower() == "file://":
        destination = destination[7:]
    return Path(destination).expanduser()




class InlineSink:
    name = "inline"
    description = 'Base64 data URI in the response ("video": "data:video/mp4;base64,…").'

    def handles(self, destination: str) -> bool:
        return destination == INLINE

    def deliver(self, video: Path, destination: str, settings: Settings) -> dict[str, str]:
        out = io.StringIO()
        out.write(f"data:{MIME};base64,")
        with open(video, "rb") as fh:
            while chunk := fh.read(CHUNK):
                out.write(base64.b64encode(chunk).decode("ascii"))
        return {"video": out.getvalue()}


class FileSink:
    name = "file"
    description = 'A local file or network-volume path ("video_path").'

    def handles(self, destination: str) -> bool:
        return destination != INLINE and _is_local(destination)

    def deliver(self, video: Path, destination: str, settings: Settings) -> dict[str, str]:
        """Under an output root, walk there without following symlinks (see `talkgen.safe_write`)."""
        from talkgen.safe_write import root_of, write_failed, write_plain, write_under_root

        target = os.path.normpath(os.path.abspath(_local_path(destination)))
        root = root_of(target, [*settings.output_roots, settings.volume_dir])
        try:
            if root is not None:
                write_under_root(video, target, root)
            else:
                write_plain(video, Path(target))
        except OSError as exc:
            raise write_failed(target, exc) from None
        except ValueError as exc:  # a NUL byte in a trusted path
            raise OutputFailed(f"Cannot write the video to {shown(target)}: {exc}.", retryable=False) from None
        return {"video_path": target}


class FsspecSink:
    name = "fsspec"
    description = 'Upload to any fsspec URL: s3://, gs://, az://, memory://, … ("video_url").'

    def handles(self, destination: str) -> bool:
        return destination != INLINE and not _is_local(destination)

    def deliver(self, video: Path, destination: str, settings: Settings) -> dict[str, str]:
        import fsspec

        destination = normalised(destination)
        protocol = protocol_of(destination)
        try:
            fs, path = fsspec.core.url_to_fs(destination, **settings.storage_options_for(protocol))
        except ImportError as exc:
            raise OutputFailed(
                f"Cannot write to {protocol}:// URLs: {exc}. Install the driver, e.g. pip install 'talkgen[s3]'.",
                retryable=False,
            ) from exc
        except (ValueError, TypeError) as exc:
            raise OutputFailed(
                f"Cannot write to {_shown_url(destination)}: {reason(exc)}. Use a storage URL such as "
                "s3://bucket/prefix/.",
                retryable=False,
            ) from None
        extra = {"ContentType": MIME} if protocol in ("s3", "s3a") else {}
        try:
            with open(video, "rb") as src, fs.open(path, "wb", **extra) as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except Exception as exc:  # storage drivers raise their own types (botocore, aiohttp, …)
            raise OutputFailed(
                f"Upload to {_shown_url(destination)} failed: {reason(exc)}. Check the URL, the credentials "
                "and that the bucket exists.",
            ) from exc
        result = {"video_url": destination}
        # Not every backend can sign; the storage URL is returned either way.
        with contextlib.suppress(NotImplementedError, AttributeError, OSError, ValueError):
            result["presigned_url"] = fs.sign(path, expiration=settings.presign_expiry_s)
        return result


@hookimpl
def register_sinks(register) -> None:  # type: ignore[no-untyped-def]
    register(InlineSink())
    register(FileSink())
    register(FsspecSink())


def _under(path: Path, roots: list[Path]) -> bool:
    real = os.path.realpath(path)
    return any(real == os.path.realpath(r) or real.startswith(os.path.realpath(r) + os.sep) for r in roots)


def with_name(destination: str, job_id: str) -> str:
    """A prefix (ending in /, or without .mp4) gets ``<job_id>.mp4`` appended."""
    if destination.lower().endswith(".mp4"):
        return destination
    return destination.rstrip("/") + f"/{job_id}.mp4"


def planned_destination(request: TalkRequest, settings: Settings, job_id: str, output: str | None) -> str | None:
    """Where the video goes, decided and checked before any work: None means 'inline if small enough'.

    ``output`` is the trusted caller's choice (CLI ``-o``, Python API); ``request.output_url`` is
    untrusted and may only write locally under ``settings.output_roots`` (returned as its real path, so
    the sink can walk there from the root without following symlinks). A local destination must not be
    a directory and must lie in a writable place, so a bad one fails now and not after the render.
    """
    if output is not None:
        return _checked_output(str(output))
    if request.network_volume:
        if not settings.volume_dir.is_dir() or not os.access(settings.volume_dir, os.W_OK):
            raise OutputFailed(
                f"`network_volume` is true but {settings.volume_dir} is not a writable directory: attach a "
                "network volume to the endpoint (or set TALKGEN_VOLUME_DIR), or drop `network_volume`.",
                retryable=False,
                field="network_volume",
            )
        return str(settings.volume_dir / f"talkgen_{job_id}.mp4")
    if request.output_url:
        url = with_name(request.output_url, job_id)
        if _is_local(url):
            if not _under(_local_path(url), settings.output_roots):
                raise ForbiddenSource(
                    f"`output_url` {shown(request.output_url)} is a local path outside the allowed output roots "
                    f"({', '.join(map(str, settings.output_roots)) or 'none'}): use a storage URL such as "
                    "s3://bucket/prefix/, or set TALKGEN_OUTPUT_ROOTS.",
                    field="output_url",
                )
            real = os.path.realpath(_local_path(url))
            _check_local(Path(real), "output_url", "`output_url`")
            return real
        url = normalised(url)
        _check_remote(url, settings)
        return url
    return None


def _checked_output(output: str) -> str:
    """The trusted ``output``: a local file path in a writable place, or a URL with a known protocol."""
    if "\x00" in output:
        raise InvalidRequest("The output path (-o / output) contains a NUL character: remove it.", field="output")
    if _is_local(output):
        _check_local(_local_path(output), "output", "The output path (-o / output)")
        return output
    output = normalised(output)
    _check_driver(protocol_of(output), "output", "The output URL (-o / output)")
    return output


def _check_local(path: Path, field: str, label: str) -> None:
    """``path`` can become a file: not a directory, and its nearest existing parent is a writable directory."""
    try:
        if path.is_dir():
            raise InvalidRequest(
                f"{label} {shown(str(path))} is a directory: give a file path such as "
                f"{shown(str(path / 'talkgen.mp4'))}.",
                field=field,
            )
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise InvalidRequest(
                f"{label} {shown(str(path))} lies under {shown(str(parent))}, which is a file, not a directory: "
                "choose another path.",
                field=field,
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputFailed(
                f"{label} {shown(str(path))} cannot be written: no permission to write in {shown(str(parent))}. "
                "Choose a writable place.",
                retryable=False, field=field,
            )
    except OSError as exc:
        problem = exc.strerror or exc
        raise InvalidRequest(f"{label} {shown(str(path))} cannot be used: {problem}.", field=field) from None


def _check_remote(url: str, settings: Settings) -> None:
    """An untrusted storage URL: an allowed protocol, no chaining, and a driver that is installed."""
    protocol = protocol_of(url)
    if "::" in url or protocol not in settings.output_protocols:
        raise ForbiddenSource(
            f"`output_url` {_shown_url(url)} uses {shown(protocol, 40)}; requests may write to "
            f"{', '.join(p + '://' for p in settings.output_protocols)} (TALKGEN_OUTPUT_PROTOCOLS), without "
            "'::' chaining.",
            field="output_url",
        )
    _check_driver(protocol, "output_url", "`output_url`")


def _check_driver(protocol: str, field: str, label: str) -> None:
    """fsspec knows ``protocol`` and its driver is installed."""
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise OutputFailed(
            f"{label} needs the {protocol}:// driver, which is not installed: {reason(exc)}", retryable=False,
            field=field,
        ) from None
    except ValueError:
        kind = ForbiddenSource if field == "output_url" else InvalidRequest
        raise kind(
            f"{label} uses {shown(protocol, 40)}, a protocol fsspec does not know: use a storage URL such as "
            "s3://bucket/prefix/ or a local path.",
            field=field,
        ) from None


def _shown_url(url: str) -> str:
    """A URL as a message shows it: without a query string (which may hold tokens), cut short."""
    return shown(url.split("?", 1)[0])



def choose_destination(planned: str | None, video_size: int, settings: Settings, job_id: str) -> str:
    """The final destination: the planned one, else inline when small, else the configured output URL."""
    if planned is not None:
        return planned
    if video_size <= settings.inline_output_limit_bytes:
        return INLINE
    if settings.output_url:
        return with_name(settings.output_url, job_id)
    raise OutputFailed(
        f"The video is {video_size / 1e6:.1f} MB, above the {settings.inline_output_limit_mb:g} MB inline limit "
        "(platforms reject larger results). Set TALKGEN_OUTPUT_URL to a storage prefix such as "
        "s3://bucket/talkgen/, pass `output_url` or `network_volume: true` in the request, or raise "
        "TALKGEN_INLINE_OUTPUT_LIMIT_MB.",
        retryable=False,
    )


def deliver(video: Path, destination: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """Write ``video`` with the sink that handles ``destination``; returns (sink name, response fields)."""
    from talkgen.plugins import get_registry

    for registered in reversed(get_registry().sinks):
        if registered.obj.handles(destination):
            return registered.name, registered.obj.deliver(video, destination, settings)
    raise OutputFailed(f"No output sink handles {_shown_url(destination)}.", retryable=False)
