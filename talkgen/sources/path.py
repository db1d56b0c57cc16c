"""The ``path`` source: copy a local file from an allowed directory into the job's work directory."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from talkgen.errors import ForbiddenSource, MediaUnreadable, shown
from talkgen.hookspecs import hookimpl
from talkgen.request import MediaRef
from talkgen.sources.base import FetchContext, read_chunks, too_large, write_capped


class PathSource:
    """Reads ``*_path`` inputs, only from under ``TALKGEN_ALLOWED_PATH_ROOTS``.

    The path and the roots are both resolved with `os.path.realpath` before comparing, so ``..``
    segments and symlinks that lead outside every root are refused.
    """

    name = "path"
    description = "local files under TALKGEN_ALLOWED_PATH_ROOTS (.. and symlink escapes refused)"

    def handles(self, ref: MediaRef) -> bool:
        return ref.via == "path"

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
        ctx = ctx.for_input()  # a slow mount (NFS, FUSE) is held to TALKGEN_DOWNLOAD_TIMEOUT_S too
        source = _allowed_file(ref, ctx)
        with ctx.partial_file(ref) as dest:
            _copy(source, dest, ref, ctx)
        return dest


def _allowed_file(ref: MediaRef, ctx: FetchContext) -> str:
    """The real path of ``ref.value``, if it is a regular file under an allowed root."""
    roots = [os.path.realpath(root) for root in ctx.settings.allowed_path_roots]
    real = os.path.realpath(ref.value.strip())
    if not any(_is_within(real, root) for root in roots):
        allowed = ", ".join(roots) or "(none configured)"
        raise ForbiddenSource(
            f"`{ref.field}` {shown(ref.value)} is outside the allowed directories ({allowed}). Put the file "
            "under one of them, or an operator can add its directory to TALKGEN_ALLOWED_PATH_ROOTS.",
            field=ref.field,
        )
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise _unreadable(ref, f"file not found: {shown(ref.value)}; check the path inside the container.") from None
    except OSError as exc:
        raise _unreadable(ref, f"cannot read {shown(ref.value)} ({exc.strerror}).") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise _unreadable(ref, f"{shown(ref.value)} is {what}; give the path of a media file.")
    return real


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _copy(source: str, dest: Path, ref: MediaRef, ctx: FetchContext) -> None:
    """Stream ``source`` to ``dest`` in 1 MiB chunks, enforcing the download cap and the cancel flag."""
    limit = ctx.settings.max_download_bytes
    try:
        src = open(source, "rb")  # noqa: SIM115 (closed by the with below)
    except PermissionError:
        raise _unreadable(ref, f"no permission to read {shown(ref.value)}; let the worker read it.") from None
    with src:
        if os.fstat(src.fileno()).st_size > limit:
            raise too_large(ref, limit)
        write_capped(read_chunks(src), dest, ref, ctx)  # the cap holds even if the file grows meanwhile


def _unreadable(ref: MediaRef, problem: str) -> MediaUnreadable:
    return MediaUnreadable(f"`{ref.field}`: {problem}", field=ref.field)


@hookimpl
def register_sources(register: Callable[[object], None]) -> None:
    register(PathSource())
