"""Keeps a started ComfyUI no longer than the talkgen process that started it.

``python -m talkgen.engines.comfyui.watchdog -- <ComfyUI command>`` runs the command in its own process group
and holds the read end of a pipe on its stdin whose write end only the talkgen process has. When that process
exits in any way (normal exit, an exception, SIGKILL, the OOM killer) the pipe reaches end-of-file and the
watchdog stops ComfyUI: SIGTERM to its group, SIGKILL after ``GRACE_S``. SIGTERM/SIGINT to the watchdog do the
same. When ComfyUI exits by itself the watchdog exits with its code, so the supervisor sees the crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

GRACE_S = 10.0


def _lifeline(stop: threading.Event) -> None:
    """Block on stdin until the parent's end of the pipe closes."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    stop.set()


def _stop(child: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[args.index("--") + 1:] if "--" in args else args
    if not command:
        print("usage: python -m talkgen.engines.comfyui.watchdog -- <command>", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=_lifeline, args=(stop,), daemon=True).start()
    while not stop.wait(0.5):
        if child.poll() is not None:
            return child.returncode if child.returncode >= 0 else 128 - child.returncode
    _stop(child)
    return 0


if __name__ == "__main__":
    sys.exit(main())
