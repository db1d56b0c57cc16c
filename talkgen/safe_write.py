"""Write a file under an allowed root without following a symlink that appeared after the check.

A request's local ``output_url`` is checked against ``TALKGEN_OUTPUT_ROOTS`` when the job is planned and
written minutes later, after the render. `write_under_root` walks from the root to the target one
directory at a time with ``O_NOFOLLOW | O_DIRECTORY`` on directory file descriptors, creates the
temporary file with ``O_EXCL | O_NOFOLLOW`` inside the last one and renames it there: a directory
swapped for a symlink meanwhile is refused, and nothing is written outside the root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path

from talkgen.errors import ForbiddenSource, OutputFailed, shown

CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def root_of(target: str, roots: list[Path]) -> str | None:
    """The real path of the root that ``target`` (an absolute, symlink-free path) lies strictly under."""
    for root in roots:
        real = os.path.realpath(root)
        if target.startswith(real.rstrip(os.sep) + os.sep):
            return real
    return None


def write_under_root(video: Path, target: str, root: str, field: str = "output_url") -> None:
    """Copy ``video`` to ``target`` (under ``root``), refusing any symlink or non-directory on the way."""
    parts = os.path.relpath(target, root).split(os.sep)
    if any(p in ("", ".", "..") for p in parts):
        raise ForbiddenSource(f"`{field}` {shown(target)} is not inside {shown(root)}.", field=field)
    os.makedirs(root, exist_ok=True)  # the operator's root itself may be (or sit behind) a symlink
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts[:-1]):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=fd)
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = os.path.join(root, *parts[: i + 1])
                    raise ForbiddenSource(
                        f"`{field}`: {shown(where)} is a symbolic link or not a directory; talkgen writes under "
                        "TALKGEN_OUTPUT_ROOTS only through real directories. Choose another path.",
                        field=field,
                    ) from None
                raise
            os.close(fd)
            fd = inner
        _write_in(fd, video, parts[-1])
    finally:
        os.close(fd)


def _write_in(dir_fd: int, video: Path, name: str) -> None:
    """Copy ``video`` to a fresh temporary file in ``dir_fd``, then rename it to ``name`` there."""
    tmp = f".{name[:200]}.{secrets.token_hex(4)}.partial"
    out = os.open(tmp, _FILE_FLAGS, 0o644, dir_fd=dir_fd)
    try:
        with open(out, "wb") as dst, open(video, "rb") as src:
            shutil.copyfileobj(src, dst, CHUNK)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def write_plain(video: Path, target: Path) -> None:
    """A trusted destination outside the output roots: temporary file beside it, then rename."""
    tmp = target.with_name(f".{target.name[:200]}.{secrets.token_hex(4)}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_failed(target: str, exc: OSError) -> OutputFailed:
    return OutputFailed(
        f"Could not write the video to {shown(target)}: {exc.strerror or exc}. Choose a writable file path.",
        retryable=False,
    )
