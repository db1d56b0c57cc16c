"""Where a stream's files go: a local folder (CLI, network volume) or any fsspec URL (s3://, gs://, memory://).

Every file is written whole or not at all (a temporary file renamed into place locally; one PUT on object
stores), so a player polling the playlist never reads half a segment.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

from talkgen.errors import OutputFailed, shown
from talkgen.settings import Settings
from talkgen.storage_url import normalised, protocol_of, reason

TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".json": "application/json"}


def stream_folder(destination: str) -> str:
    """The stream folder beside a video destination: ``…/name.mp4`` → ``…/name.hls``."""
    base = destination[:-4] if destination.lower().endswith(".mp4") else destination.rstrip("/")
    return base + ".hls"


def is_local(location: str) -> bool:
    return "://" not in location or location[:7].lower() == "file://"


class Store:
    """One stream folder. ``url(name)`` is what a client fetches: a local path, a presigned https URL when the
    storage can sign, else the storage URL."""

    def __init__(self, folder: str, settings: Settings) -> None:
        self.settings = settings
        self.local = is_local(folder)
        self.fs: Any = None
        if self.local:
            self.folder = os.path.abspath(os.path.expanduser(folder[7:] if folder[:7].lower() == "file://" else folder))
            self.path = self.folder
        else:
            import fsspec

            self.folder = normalised(folder).rstrip("/")
            protocol = protocol_of(self.folder)
            try:
                self.fs, self.path = fsspec.core.url_to_fs(self.folder, **settings.storage_options_for(protocol))
            except (ImportError, ValueError, TypeError) as exc:
                raise OutputFailed(f"Cannot stream to {shown(self.folder)}: {reason(exc)}.", retryable=False) from None
        self._signs: bool | None = None

    # -- writing -------------------------------------------------------------------------------------------
    def put(self, name: str, data: bytes) -> None:
        try:
            if self.local:
                _write_local(Path(self.folder), name, data)
            else:
                extra = {}
                if protocol_of(self.folder) in ("s3", "s3a"):
                    extra = {"ContentType": TYPES.get(Path(name).suffix, "application/octet-stream")}
                    if name.endswith(".m3u8"):
                        extra["CacheControl"] = "no-cache"
                self.fs.pipe_file(f"{self.path}/{name}", data, **extra)
        except OutputFailed:
            raise
        except Exception as exc:  # storage drivers raise their own types
            raise OutputFailed(f"Writing the stream file {shown(self.location(name))} failed: {reason(exc)}.") from exc

    def get(self, name: str) -> bytes | None:
        """A file's bytes, or None when it is not there (or cannot be read)."""
        try:
            if self.local:
                return Path(self.folder, name).read_bytes()
            return self.fs.cat_file(f"{self.path}/{name}")
        except Exception:
            return None

    # -- addresses -----------------------------------------------------------------------------------------
    def location(self, name: str) -> str:
        """The file's local path or storage URL."""
        return os.path.join(self.folder, name) if self.local else f"{self.folder}/{name}"

    def url(self, name: str) -> str:
        """What a player fetches: presigned https where the storage signs, else `location`."""
        if self.local or self._signs is False:
            return self.location(name)
        try:
            signed = self.fs.sign(f"{self.path}/{name}", expiration=self.settings.presign_expiry_s)
            self._signs = True
            return str(signed)
        except (NotImplementedError, AttributeError, OSError, ValueError):
            self._signs = False
            return self.location(name)

    @property
    def signs(self) -> bool:
        """True when `url` gives presigned links (the playlist must then name its segments by those links)."""
        if self._signs is None and not self.local:
            self.url("playlist.m3u8")
        return bool(self._signs)


def _write_local(folder: Path, name: str, data: bytes) -> None:
    """Temporary file created without following links, then renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{secrets.token_hex(4)}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with open(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
