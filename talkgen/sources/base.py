"""The source contract: turn a request's media reference into a local file in the job's work directory."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from talkgen.errors import Cancelled, FetchFailed, MediaTooLarge, Timeout
from talkgen.request import MediaRef
from talkgen.settings import MB, Settings


@dataclass
class FetchContext:
    """What a source may use: operator settings, where to write, a cancel flag and the deadlines.

    ``deadline`` is the job's; ``input_deadline`` is one input's (``TALKGEN_DOWNLOAD_TIMEOUT_S``), set by
    `for_input`. ``digests`` maps each written file to the sha256 of its bytes (see `write_capped`).
    """

    settings: Settings
    dest_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() after which fetching fails with `timeout`
    input_deadline: float | None = None  # time.monotonic() after which this input fails with `fetch_failed`
    digests: dict[Path, str] = field(default_factory=dict)

    def for_input(self) -> FetchContext:
        """This context with one input's download clock started (unchanged when it already runs)."""
        if self.input_deadline is not None:
            return self
        return dataclasses.replace(self, input_deadline=time.monotonic() + self.settings.download_timeout_s)

    def time_left(self) -> float | None:
        """Seconds until the nearer deadline (job or input); None when neither is set."""
        ends = [d for d in (self.deadline, self.input_deadline) if d is not None]
        return min(ends) - time.monotonic() if ends else None

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
    if ctx.input_deadline is not None and time.monotonic() > ctx.input_deadline:
        raise download_too_slow(ref, ctx)


def download_too_slow(ref: MediaRef, ctx: FetchContext) -> FetchFailed:
    """The per-input deadline passed (retryable: the sender may be faster next time)."""
    return FetchFailed(
        f"Fetching `{ref.field}` took longer than {ctx.settings.download_timeout_s:g} s "
        "(TALKGEN_DOWNLOAD_TIMEOUT_S): the source sends too slowly; use a faster host or a smaller file, "
        "or an operator can raise TALKGEN_DOWNLOAD_TIMEOUT_S.",
        field=ref.field, retryable=True, details={"download_timeout_s": ctx.settings.download_timeout_s},
    )


def too_large(ref: MediaRef, limit: int, size: int | None = None) -> MediaTooLarge:
    got = f" ({size / MB:.1f} MB)" if size is not None else ""
    return MediaTooLarge(
        f"`{ref.field}` is larger than the {limit / MB:g} MB download limit{got}: send a smaller file, "
        "or an operator can raise TALKGEN_MAX_DOWNLOAD_MB.",
        field=ref.field,
    )


def write_capped(chunks: Iterable[bytes], dest: Path, ref: MediaRef, ctx: FetchContext) -> int:
    """Write ``chunks`` to ``dest``, stopping at the download cap, on cancel or past a deadline.

    Returns the bytes written; the sha256 of exactly those bytes, hashed while streaming, is recorded in
    ``ctx.digests[dest]``.
    """
    limit = ctx.settings.max_download_bytes
    written = 0
    digest = hashlib.sha256()
    ctx.digests.pop(dest, None)
    check_cancel(ref, ctx)
    with open(dest, "wb") as out:
        for chunk in chunks:
            check_cancel(ref, ctx)
            written += len(chunk)
            if written > limit:
                raise too_large(ref, limit)
            out.write(chunk)
            digest.update(chunk)
    ctx.digests[dest] = digest.hexdigest()
    return written


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks (for sources that do not use `write_capped`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in read_chunks(fh):
            digest.update(chunk)
    return digest.hexdigest()


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """A binary file object as an iterator of chunks."""
    while chunk := stream.read(CHUNK):
        yield chunk
