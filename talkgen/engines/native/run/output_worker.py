"""Writes finished windows (H.264 writer, then checkpoint) on a background thread.

Encoding and checkpointing one window overlaps with generating the next, so they stay off the critical
path. Windows are handled strictly in order; at most one waits in the queue, so memory stays bounded.
An error in the worker surfaces at the next `submit` or at `finish`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class OutputWorker:
    def __init__(self, handle: Callable[..., None]) -> None:
        self._handle = handle
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="talkgen-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            if self._error is None:
                try:
                    self._handle(*item)
                except BaseException as exc:  # handed to the generating thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *args: Any) -> None:
        self._raise()
        self._queue.put(args)

    def finish(self) -> None:
        """Wait until every submitted window is written; re-raise the worker's error."""
        self.close()
        self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
