"""What a file is, decided from its bytes (never from its name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_HEAD = 64


@dataclass(frozen=True)
class Media:
    """A fetched input: a local file in the job's work directory and what its bytes are."""

    path: Path
    kind: str  # "image" | "video" | "audio" | "unknown"
    mime: str
    size: int
    source: str = ""  # the field it came from, e.g. "image_url"
    sha256: str = ""  # hex digest of the file's bytes, computed while fetching ("" when unknown)


def _sniff_head(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "image/gif"
    if head[:2] == b"BM":
        return "image", "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "image/tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head[:4] == b"fLaC":
        return "audio", "audio/flac"
    if head[:4] == b"OggS":
        return "audio", "audio/ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "audio", "audio/mpeg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio", "audio/aiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "audio", "audio/mp4"
        if brand.startswith(b"qt"):
            return "video", "video/quicktime"
        return "video", "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "video/webm" if b"webm" in head else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "video/x-msvideo"
    return "unknown", "application/octet-stream"


def sniff(path: Path) -> tuple[str, str]:
    """(kind, mime) from the file's first bytes."""
    with open(path, "rb") as fh:
        return _sniff_head(fh.read(_HEAD))


def media_from_file(path: Path, source: str = "", sha256: str = "") -> Media:
    """Describe a fetched file as `Media`, sniffing its kind."""
    kind, mime = sniff(path)
    return Media(path=path, kind=kind, mime=mime, size=path.stat().st_size, source=source, sha256=sha256)
