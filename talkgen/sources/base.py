"""The source contract: turn a request's media reference into a local file in the job's work directory."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from talkgen.request import MediaRef
from talkgen.settings import Settings


@dataclass
class FetchContext:
    """What a source may use: operator settings, where to write, and a cancel flag."""

    settings: Settings
    dest_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)

    def dest_for(self, ref: MediaRef) -> Path:
        """The file a source writes for ``ref`` (named by role, never by the user's file name)."""
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        return self.dest_dir / f"input_{ref.role}"


@runtime_checkable
class Source(Protocol):
    """A media source. ``handles`` decides by the reference alone; ``fetch`` writes the bytes.

    ``fetch`` must stream (never hold the whole file in memory), enforce the size caps in the settings,
    raise `talkgen.errors.TalkgenError` subclasses naming ``ref.field``, and remove its partial file on
    any failure.
    """

    name: str
    description: str

    def handles(self, ref: MediaRef) -> bool: ...

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path: ...
