"""Per-job work directories that say who owns them, and a sweep of those whose owner died.

A worker killed hard (SIGKILL, OOM killer, a lost node) never runs its cleanup. Each work directory
holds ``owner.json`` (host, pid, the process's start time); at start, a `TalkGen` removes the
directories under its work root whose owner process is gone. Directories of live processes, of other
hosts (a shared volume) and without an owner file are left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from talkgen.errors import InvalidConfig

log = logging.getLogger("talkgen")
PREFIX = "talkgen-"
OWNER = "owner.json"


def work_root(configured: Path | None) -> Path:
    """``TALKGEN_WORK_DIR`` (created when missing), else the system temp directory."""
    if configured is None:
        return Path(tempfile.gettempdir())
    try:
        configured.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidConfig(
            f"TALKGEN_WORK_DIR {str(configured)[:200]!r} cannot be created ({exc.strerror or exc}): point it at a "
            "writable directory, or unset it to use the system temp directory."
        ) from None
    return configured


def make_workdir(configured: Path | None, job_id: str) -> Path:
    """A new, private work directory for one job, marked with this process as its owner."""
    root = work_root(configured)
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{job_id}-", dir=root))
        (path / OWNER).write_text(json.dumps(_me()))
    except OSError as exc:
        raise InvalidConfig(
            f"Cannot create a job directory in {str(root)[:200]!r} ({exc.strerror or exc}): make TALKGEN_WORK_DIR "
            "writable and give it free space."
        ) from None
    return path


def sweep_stale(configured: Path | None) -> list[Path]:
    """Remove work directories whose owner process is gone; returns what was removed."""
    try:
        root = work_root(configured)
        candidates = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except (OSError, InvalidConfig):
        return []
    removed = []
    for path in candidates:
        try:
            owner = json.loads((path / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if isinstance(owner, dict) and _is_dead(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d work directories left by stopped workers", len(removed))
    return removed


def _me() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _is_dead(owner: dict[str, object]) -> bool:
    """True when ``owner`` was a process on this host that no longer runs (a reused pid counts as gone)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = owner.get("started")
    return started is not None and _start_time(pid) not in (None, started)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
