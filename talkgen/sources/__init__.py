"""Media sources: local path, http(s) URL, base64 / data URI, and any fsspec URL (s3://, gs://, …)."""

from __future__ import annotations

from talkgen.errors import UnsupportedMedia, shown
from talkgen.media.kinds import Media, media_from_file
from talkgen.mode import ALL_ROLES, MediaRole
from talkgen.request import MediaRef
from talkgen.sources.base import FetchContext, Source, file_sha256

__all__ = ["FetchContext", "Source", "fetch_media", "pick_source"]

_ROLES = {role.name: role for role in ALL_ROLES}
# Which sniffed kinds fit a role: audio may come from a video container (its soundtrack is used).
_ACCEPTS = {"image": {"image"}, "video": {"video"}, "audio": {"audio", "video"}}


def pick_source(ref: MediaRef) -> Source:
    """The registered source for ``ref``; later registrations (plugins) win over built-ins."""
    from talkgen.plugins import get_registry

    for registered in reversed(get_registry().sources):
        if registered.obj.handles(ref):
            return registered.obj
    raise UnsupportedMedia(
        f"`{ref.field}`: no media source handles {shown(ref.value, 80)}. Use a local path, an http(s) URL, "
        "base64 / a data: URI, or a storage URL such as s3://bucket/key.",
        field=ref.field,
    )


def fetch_media(ref: MediaRef, ctx: FetchContext) -> Media:
    """Fetch one reference into the work directory and check that its bytes fit the role.

    The input's download clock (``TALKGEN_DOWNLOAD_TIMEOUT_S``) starts here. ``Media.sha256`` is the
    digest the source recorded while writing (`write_capped`); a plugin source that records none has its
    file hashed once after the fetch.
    """
    role: MediaRole = _ROLES[ref.role]
    ctx = ctx.for_input()
    path = pick_source(ref).fetch(ref, ctx)
    digest = ctx.digests.get(path) or file_sha256(path)
    media = media_from_file(path, source=ref.field, sha256=digest)
    if media.kind not in _ACCEPTS[role.kind]:
        path.unlink(missing_ok=True)
        what = "unrecognised data" if media.kind == "unknown" else f"{_a(media.kind)} {media.kind} ({media.mime})"
        raise UnsupportedMedia(
            f"`{ref.field}` is {what}, but {role.label} must be {_a(role.kind)} {role.kind}"
            f"{' (jpeg, png, webp)' if role.kind == 'image' else ''}"
            f"{' (wav, mp3, m4a, flac, ogg, or a video with sound)' if role.kind == 'audio' else ''}"
            f"{' (mp4, mov, webm, mkv, avi)' if role.kind == 'video' else ''}: send the right file.",
            field=ref.field,
        )
    return media


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
