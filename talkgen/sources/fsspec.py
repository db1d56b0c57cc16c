"""The ``fsspec`` source: storage URLs (s3://, gs://, az://, hf://, memory://, …) streamed to disk.

Credentials come the standard way for each backend (environment, instance profile, config files);
operators add options per protocol with ``TALKGEN_STORAGE_OPTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from talkgen.errors import (
    FetchFailed,
    ForbiddenSource,
    MediaUnreadable,
    TalkgenError,
    UnsupportedMedia,
)
from talkgen.hookspecs import hookimpl
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources.base import FetchContext, read_chunks, too_large, write_capped
from talkgen.storage_url import normalised, protocol_of, reason

BLOCK = 8 << 20  # read-ahead per request (s3fs would buffer 50 MB by default)
# Handled by other sources, or not URLs of remote data at all.
NOT_HANDLED = frozenset({"http", "https", "file", "local", "data"})
# Protocols that read this machine's files (bypassing TALKGEN_ALLOWED_PATH_ROOTS) or wrap other URLs.
LOCAL_OR_WRAPPING = frozenset({
    "asynclocal", "async_wrapper", "asyncwrapper", "blockcache", "cached", "filecache", "simplecache",
    "dir", "generic", "reference", "tar", "zip", "libarchive", "git", "dvc", "jlab",
})
# Protocols that reach any host the URL names, so they could reach private networks.
ANY_HOST = frozenset({
    "ftp", "sftp", "ssh", "smb", "webdav", "webhdfs", "hdfs", "arrow_hdfs", "dask", "jupyter", "root",
})
EXTRAS = {"s3": "s3", "s3a": "s3"}  # protocol -> talkgen extra that installs its driver




class FsspecSource:
    """Reads ``*_url`` inputs whose scheme is an fsspec storage protocol (not http/https/file)."""

    name = "fsspec"
    description = "storage URLs via fsspec: s3://, gs://, az://, hf://, memory://, … (size-capped)"

    def handles(self, ref: MediaRef) -> bool:
        if ref.via != "url":
            return False
        from fsspec.registry import known_implementations, registry

        protocol = protocol_of(ref.value)
        return protocol not in NOT_HANDLED and (protocol in known_implementations or protocol in registry)

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
        protocol = protocol_of(ref.value)
        _check_allowed(ref, protocol, ctx)
        with ctx.partial_file(ref) as dest:
            _copy(ref, ctx, protocol, dest)
        return dest


def _check_allowed(ref: MediaRef, protocol: str, ctx: FetchContext) -> None:
    # They connect to whatever host they name, unchecked: only where private and link-local hosts are allowed.
    settings = ctx.settings
    reaches_any_host = protocol in ANY_HOST and not (settings.allow_private_urls and settings.allow_link_local_urls)
    if "::" in ref.value or protocol in LOCAL_OR_WRAPPING or reaches_any_host:
        raise ForbiddenSource(
            f"`{ref.field}`: {protocol}:// URLs are not accepted (they can read local files or reach "
            "private hosts). Use an http(s) URL or a storage URL such as s3://, gs://, az:// or hf://.",
            field=ref.field,
        )


def _copy(ref: MediaRef, ctx: FetchContext, protocol: str, dest: Path) -> None:
    """`_stream`, with storage errors turned into talkgen errors that say what to change.

    Drivers raise their own types (botocore, aiohttp, httpx, …): whatever is not a caller's mistake that
    can be named is a failed fetch, retryable unless credentials are missing.
    """
    try:
        _stream(ref, ctx, ctx.settings.storage_options_for(protocol), dest)
    except TalkgenError:
        raise
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        how = f"pip install 'talkgen[{extra}]'" if extra else f"install the fsspec driver ({reason(exc)})"
        raise UnsupportedMedia(
            f"`{ref.field}`: {protocol}:// URLs need a driver that is not installed; an operator can {how}.",
            field=ref.field,
        ) from None
    except FileNotFoundError:
        raise MediaUnreadable(
            f"`{ref.field}`: {_shown(ref)} not found: check the bucket and key (and that it exists).",
            field=ref.field,
        ) from None
    except PermissionError as exc:
        raise ForbiddenSource(
            f"`{ref.field}`: access to {_shown(ref)} denied ({reason(exc)}): make the object readable by the "
            "worker's credentials, or an operator can set them (environment or TALKGEN_STORAGE_OPTIONS).",
            field=ref.field,
        ) from None
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise _not_a_file(ref, str(exc)) from None
    except (ValueError, TypeError) as exc:  # the driver cannot take this URL (form, missing parameters)
        raise UnsupportedMedia(
            f"`{ref.field}`: {_shown(ref)} cannot be read by this server's {protocol}:// driver "
            f"({reason(exc)}): check the URL, or use an http(s) or s3:// URL.",
            field=ref.field,
        ) from None
    except Exception as exc:  # see the docstring
        if "credential" in type(exc).__name__.lower():
            raise FetchFailed(
                f"`{ref.field}`: this worker has no credentials for {protocol}:// ({reason(exc)}): an operator "
                "can set them (environment or TALKGEN_STORAGE_OPTIONS), or send an http(s) URL.",
                field=ref.field, retryable=False,
            ) from None
        raise FetchFailed(
            f"`{ref.field}`: reading {_shown(ref)} failed ({reason(exc)}); try again later.", field=ref.field
        ) from None


def _stream(ref: MediaRef, ctx: FetchContext, options: dict[str, Any], dest: Path) -> None:
    """Check the object's size, then copy it to ``dest`` in chunks under the cap."""
    import fsspec

    limit = ctx.settings.max_download_bytes
    options = _with_timeouts(protocol_of(ref.value), options, ctx.settings)
    fs, path = fsspec.core.url_to_fs(normalised(ref.value), **options)
    info: dict[str, Any] = fs.info(path)
    if info.get("type") == "directory":
        raise _not_a_file(ref, "a folder")
    if (info.get("size") or 0) > limit:
        raise too_large(ref, limit)
    with fs.open(path, "rb", block_size=BLOCK) as src:
        write_capped(read_chunks(src), dest, ref, ctx)


def _with_timeouts(protocol: str, options: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """S3: each storage call bounded by the URL timeouts, one botocore attempt per s3fs try (s3fs retries on its
    own; by default botocore waits 60 s per read, 5 times, under each of them), unless the operator
    configured botocore in TALKGEN_STORAGE_OPTIONS."""
    if protocol not in ("s3", "s3a") or "config_kwargs" in options:
        return options
    timeouts = {"connect_timeout": settings.url_connect_timeout_s, "read_timeout": settings.url_read_timeout_s,
                "retries": {"max_attempts": 1}}
    return {**options, "config_kwargs": timeouts}


def _not_a_file(ref: MediaRef, what: str) -> MediaUnreadable:
    return MediaUnreadable(
        f"`{ref.field}`: {_shown(ref)} is not a file ({what}); give the URL of one media file.",
        field=ref.field,
    )


def _shown(ref: MediaRef) -> str:
    """The URL without a query string (which may hold tokens), cut short."""
    url = ref.value.strip().split("?", 1)[0]
    return url if len(url) <= 200 else f"{url[:200]}… ({len(url)} characters)"



@hookimpl
def register_sources(register: Callable[[object], None]) -> None:
    register(FsspecSource())
