"""The source contract: turn a request's media reference into a local file in the job's work directory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from talkgen.errors import Cancelled, MediaTooLarge, Timeout
from talkgen.request import MediaRef
from talkgen.settings import MB, Settings


@dataclass
class FetchContext:
    """What a source may use: operator settings, where to write, and a cancel flag."""

    settings: Settings
    dest_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() after which fetching fails with `timeout`

    def dest_for(self, ref: MediaRef) -> Path:
        """The file a source writes for ``ref`` (named by role, never by the user's file name)."""
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        return self.dest_dir / f"input_{ref.role}"

    @contextmanager
    def partial_file(self, ref: MediaRef) -> Iterator[Path]:
        """``dest_for(ref)``, removed again if the block fails: no half-written input is left behind."""
        dest = self.dest_for(ref)
        try:
            yield dest
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


@runtime_checkable
class Source(Protocol):
    """A media source. ``handles`` decides by the reference alone; ``fetch`` writes the bytes.

    ``fetch`` must stream (never hold the whole file in memory), enforce the size caps in the settings,
    raise `talkgen.errors.TalkgenError` subclasses naming ``ref.field``, and leave no partial file on
    failure (write inside ``with ctx.partial_file(ref) as dest:``).
    """

    name: str
    description: str

    def handles(self, ref: MediaRef) -> bool: ...

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path: ...


CHUNK = 1 << 20


def check_cancel(ref: MediaRef, ctx: FetchContext) -> None:
    """Raise when the job was cancelled or ran out of time; sources call it between chunks."""
    if ctx.cancel.is_set():
        raise Cancelled(f"Fetching `{ref.field}` was cancelled.", field=ref.field)
    if ctx.deadline is not None and time.monotonic() > ctx.deadline:
        raise Timeout(
            f"Fetching `{ref.field}` ran past the job's time limit (TALKGEN_JOB_TIMEOUT_S): use a faster "
            "host or a smaller file.",
            field=ref.field,
        )


def too_large(ref: MediaRef, limit: int, size: int | None = None) -> MediaTooLarge:
    got = f" ({size / MB:.1f} MB)" if size is not None else ""
    return MediaTooLarge(
        f"`{ref.field}` is larger than the {limit / MB:g} MB download limit{got}: send a smaller file, "
        "or an operator can raise TALKGEN_MAX_DOWNLOAD_MB.",
        field=ref.field,
    )


def write_capped(chunks: Iterable[bytes], dest: Path, ref: MediaRef, ctx: FetchContext) -> int:
    """Write ``chunks`` to ``dest``, stopping at the download cap or on cancel; returns bytes written."""
    limit = ctx.settings.max_download_bytes
    written = 0
    with open(dest, "wb") as out:
        for chunk in chunks:
            check_cancel(ref, ctx)
            written += len(chunk)
            if written > limit:
                raise too_large(ref, limit)
            out.write(chunk)
    return written


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """A binary file object as an iterator of chunks."""
    while chunk := stream.read(CHUNK):
        yield chunk
