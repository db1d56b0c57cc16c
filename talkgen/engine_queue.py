"""One job at a time per engine, first come first served, with the place in line reported.

An engine holds one set of models and their state (caches, hooks, the loaded adapter), so two jobs must
never run it at once. Everything before it (fetching, probing, preparing audio) and after it (muxing,
uploading) overlaps freely; only the engine's turn is taken in order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

POLL_S = 0.25
"""How often a waiting job re-checks its cancel flag and deadline."""


class EngineQueue:
    """A fair (FIFO) lock: ``with queue.turn(on_wait, check):`` runs once every job ahead has finished."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._line: deque[object] = deque()

    @property
    def waiting(self) -> int:
        """Jobs in line, the running one included."""
        with self._changed:
            return len(self._line)

    @contextmanager
    def turn(self, on_wait: Callable[[int], None], check: Callable[[], None]) -> Iterator[None]:
        """Wait for this job's turn. ``on_wait(ahead)`` is called whenever the number of jobs ahead changes;
        ``check()`` runs while waiting and may raise (cancelled, past the deadline) to leave the line."""
        ticket = object()
        with self._changed:
            self._line.append(ticket)
        try:
            reported = -1
            while True:
                with self._changed:
                    ahead = self._line.index(ticket)
                    if ahead == 0:
                        break
                    if ahead == reported:
                        self._changed.wait(POLL_S)
                if ahead != reported:  # called outside the lock: a slow callback holds up nobody
                    reported = ahead
                    on_wait(ahead)
                check()
        except BaseException:
            self._leave(ticket)
            raise
        try:
            yield
        finally:
            self._leave(ticket)

    def _leave(self, ticket: object) -> None:
        with self._changed:
            self._line.remove(ticket)
            self._changed.notify_all()
