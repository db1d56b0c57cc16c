"""SIGTERM as cancel: how RunPod, Modal and Kubernetes stop a worker must not leave its jobs' files behind.

The first signal cancels every job of the service (each stops at its next check, removes its work
directory and keeps its checkpoint for a rerun) and then runs the handler that was there before (the
RunPod SDK's graceful shutdown, for instance). With nothing running, or on a second signal, the previous
behaviour applies at once.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talkgen.service import TalkGen

log = logging.getLogger("talkgen")
_MARK = "_talkgen_cancels_jobs"


def cancel_on_signals(service: TalkGen, signals: Iterable[signal.Signals] = (signal.SIGTERM,)) -> bool:
    """Install the handlers (main thread only); False when they cannot be installed here."""
    for sig in signals:
        try:
            previous = signal.getsignal(sig)
            if getattr(previous, _MARK, False):
                continue
            signal.signal(sig, _handler(service, previous))
        except ValueError:  # not the main thread: the platform's own handling stays
            log.debug("cannot install a %s handler outside the main thread", sig)
            return False
    return True


def _handler(service: TalkGen, previous: object):  # type: ignore[no-untyped-def]
    fired = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        jobs = 0 if fired else service.cancel_all()
        if jobs:
            log.warning("signal %d: cancelling %d job(s); their checkpoints stay for a rerun", signum, jobs)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and (fired or not jobs):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        fired = True

    setattr(handle, _MARK, True)
    return handle
