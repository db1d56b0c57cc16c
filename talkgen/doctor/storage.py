"""Writable locations: the work dir, the checkpoint location, and where videos are written."""

from __future__ import annotations

import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import Any

from talkgen.doctor.result import Check, error, ok
from talkgen.settings import Settings

REMOTE_TIMEOUT_S = 30.0
PROBE = ".talkgen-doctor-"


def checks(settings: Settings) -> list[Check]:
    work = settings.work_dir or Path(tempfile.gettempdir())
    out = [_local("work dir", work, "TALKGEN_WORK_DIR")]
    if settings.checkpoint_url:
        out.append(_location("checkpoints", settings.checkpoint_url, "TALKGEN_CHECKPOINT_URL", settings))
    else:
        out.append(_local("checkpoints", work / "talkgen-checkpoints", "TALKGEN_CHECKPOINT_URL (default: under the "
                          "work dir)"))
    if settings.output_url:
        out.append(_location("output url", settings.output_url, "TALKGEN_OUTPUT_URL", settings))
    if settings.volume_dir.is_dir():  # read-only is fine for weights: only `network_volume` requests write there
        out.append(_as_warning(_local("network volume", settings.volume_dir, "TALKGEN_VOLUME_DIR"),
                               "requests with network_volume: true will fail until it is writable"))
    for root in settings.output_roots:  # where requests' output_url may write; absent ones are not created
        if root.is_dir() and root != settings.volume_dir:
            out.append(_local("output root", root, "TALKGEN_OUTPUT_ROOTS"))
    return out


def _as_warning(check: Check, consequence: str) -> Check:
    """An unwritable place the worker can serve without: a warning saying what will not work."""
    if check.status != "error":
        return check
    return replace(check, status="warning", detail=f"{check.detail}; {consequence}")


def _location(name: str, where: str, setting: str, settings: Settings) -> Check:
    if "://" not in where or where.startswith("file://"):
        return _local(name, Path(where.removeprefix("file://")), setting)
    return _remote(name, where, setting, settings.storage_options_for(where.split("://", 1)[0]))


def _local(name: str, path: Path, setting: str) -> Check:
    """Create the folder if needed, write and remove a small file in it."""
    path = path.expanduser()
    probe = path / f"{PROBE}{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"talkgen doctor")
        probe.unlink()
    except OSError as exc:
        return error(name, f"{path} is not writable: {exc.strerror or exc}",
                     f"make {path} writable for this user, or set {setting} to a writable place")
    return ok(name, f"{path} is writable")


def _remote(name: str, url: str, setting: str, options: dict[str, Any]) -> Check:
    """Write and remove a small object under ``url`` through fsspec, within `REMOTE_TIMEOUT_S`."""
    from talkgen.sources.url import display_url

    shown = display_url(url)
    pool = ThreadPoolExecutor(1)
    try:
        pool.submit(_probe_remote, url, options).result(REMOTE_TIMEOUT_S)
    except FutureTimeout:
        return error(name, f"{shown}: no answer within {REMOTE_TIMEOUT_S:.0f} s",
                     f"check the network and endpoint (TALKGEN_STORAGE_OPTIONS), or {setting}")
    except Exception as exc:  # fsspec backends raise their own types
        return error(name, f"{shown} is not writable: {type(exc).__name__}: {str(exc)[:300]}",
                     f"check the credentials and bucket of {setting} (TALKGEN_STORAGE_OPTIONS for endpoints)")
    finally:
        pool.shutdown(wait=False)
    return ok(name, f"{shown} is writable")


def _probe_remote(url: str, options: dict[str, Any]) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **options)
    target = f"{root.rstrip('/')}/{PROBE}{uuid.uuid4().hex}"
    with fs.open(target, "wb") as fh:
        fh.write(b"talkgen doctor")
    fs.rm(target)
