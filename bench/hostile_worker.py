"""The worker side of bench/hostile.py: one long-lived process sends cases through the RunPod handler.

For each case it records the outcome, the first line of the message, the peak RSS while it ran (VmHWM,
reset before each case; a 10 ms VmRSS sampler backs it up), and what it left behind: entries in
``TALKGEN_WORK_DIR`` and new entries in ``TMPDIR`` (leftovers), and checkpoint entries (counted apart:
a failed job may keep its checkpoint). Everything left is removed before the next case.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import hostile_cases
import hostile_sources
from hostile_cases import DEFAULT, PRIVATE, S3_DOWN, Case

SUCCESS_KEYS = ("video", "video_url", "video_path")


def build_cases(env: dict[str, Any], seed: int, count: int, quick: bool) -> list[Case]:
    """Every family's cases (deterministic for ``seed``), topped up with fuzz cases to ``count``."""
    rng = random.Random(seed)
    cases = [c for family in hostile_cases.FAMILIES + hostile_sources.FAMILIES for c in family(env, rng)]
    if quick:
        cases = [c for c in cases if not c.costly]
    cases += hostile_cases.fuzz(env, rng, max(0, count - len(cases)))
    order = {DEFAULT: 0, PRIVATE: 1, S3_DOWN: 2}
    return sorted(cases, key=lambda c: order[c.group])  # stable: one service per group


def status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


class RssSampler(threading.Thread):
    """Samples VmRSS every 10 ms; `take()` returns the peak since the last call (VmHWM included).

    Not ``ru_maxrss``: Linux carries the parent's peak into a forked child and keeps it across exec, so
    a worker started by a bench that built an 8192² video would report the bench's peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.overall = 0

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, status_kb("VmRSS"))
            time.sleep(0.01)

    def take(self) -> int:
        peak = max(self.peak, status_kb("VmHWM"), status_kb("VmRSS"))
        self.overall = max(self.overall, peak)
        self.peak = 0
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM for the next case
        return peak


def group_env(env: dict[str, Any], group: str) -> dict[str, str]:
    """The TALKGEN_* variables that differ between the service configurations."""
    s3 = env["s3_down_options"] if group == S3_DOWN else env["s3_options"]
    return {"TALKGEN_ALLOW_PRIVATE_URLS": "true" if group == PRIVATE else "false",
            "TALKGEN_STORAGE_OPTIONS": json.dumps({"s3": s3})}


def classify(response: Any, error: BaseException | None) -> dict[str, Any]:
    """outcome (coded | internal_error | escaped), code, first message line and flags."""
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        return {"outcome": "escaped", "code": type(error).__name__, "message": text[:300], "flags": []}
    if not isinstance(response, dict):
        return {"outcome": "escaped", "code": "non-dict", "message": f"returned {type(response).__name__}",
                "flags": []}
    if any(k in response for k in SUCCESS_KEYS):
        return {"outcome": "coded", "code": "ok", "message": "", "flags": []}
    message = str(response.get("error", ""))
    code = response.get("error_code")
    flags = [name for name, bad in (("traceback", "Traceback" in message or 'File "' in message),
                                    ("long_message", len(message) > 2000), ("refresh_worker", "refresh_worker" in
                                                                            response)) if bad]
    if not code:
        return {"outcome": "escaped", "code": "no error_code", "message": message[:300], "flags": flags}
    if code == "internal_error":
        flags.append("retryable" if response.get("retryable") else "not_retryable")
    first = (message.splitlines() or [""])[0]
    return {"outcome": "internal_error" if code == "internal_error" else "coded", "code": code,
            "message": first[:300], "message_len": len(message), "flags": flags}


def _entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def _clear(directory: Path, names: set[str]) -> None:
    for name in names:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class HandlerThread(threading.Thread):
    """One long-lived thread that calls the handler, as a worker's job loop does; replaced if a case hangs."""

    def __init__(self, handler: Any) -> None:
        super().__init__(daemon=True)
        self.handler = handler
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.answers: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
        self.start()

    def run(self) -> None:
        while True:
            payload = self.jobs.get()
            try:
                self.answers.put((self.handler(payload), None))
            except BaseException as exc:  # anything that leaves the handler is the finding
                self.answers.put((None, exc))

    def call(self, payload: Any, timeout_s: float) -> tuple[Any, BaseException | None, bool]:
        """(response, exception, hung)."""
        self.jobs.put(payload)
        try:
            return (*self.answers.get(timeout=timeout_s), False)
        except queue.Empty:
            return None, None, True


def run(env: dict[str, Any], cases: list[Case], start: int, results: Path) -> None:
    """Cases ``start``… through the handler, one JSON line per case appended to ``results``."""
    import runpod

    runpod.serverless.progress_update = lambda *a, **k: None  # no RunPod API here; progress is not under test
    from talkgen.runtimes.runpod import handler, reset_service

    work, checkpoints, tmp = Path(env["work_dir"]), Path(env["checkpoint_dir"]), Path(os.environ["TMPDIR"])
    tmp_before = _entries(tmp)
    sampler = RssSampler()
    sampler.start()
    sampler.take()
    group, caller = None, HandlerThread(handler)
    running: list[str] = []  # work-dir prefixes of hung jobs still going on in abandoned threads
    with results.open("a") as out:
        for index in range(start, len(cases)):
            case = cases[index]
            if case.group != group:
                group = case.group
                os.environ.update(group_env(env, group))
                reset_service()
            out.write(json.dumps({"start": index}) + "\n")
            out.flush()
            payload = case.job
            if isinstance(payload, dict):
                payload = {"id": f"hostile-{index:04d}", **payload}
            began = time.perf_counter()
            response, error, hung = caller.call(payload, case.timeout_s)
            if hung:
                caller = HandlerThread(handler)
            seconds = time.perf_counter() - began
            record = {"outcome": "hung", "code": "hung", "message": f"no answer in {case.timeout_s:g} s",
                      "flags": []} if hung else classify(response, error)
            if hung:  # its job goes on in the abandoned thread: its files are not leftovers (yet)
                running.append(f"talkgen-{payload.get('id') if isinstance(payload, dict) else ''}-")
            mine = {n for n in _entries(work) if not n.startswith(tuple(running))}
            left = sorted(mine) + sorted(_entries(tmp) - tmp_before)
            kept = len(_entries(checkpoints))
            _clear(work, mine)
            if not running:
                _clear(tmp, _entries(tmp) - tmp_before)
                _clear(checkpoints, _entries(checkpoints))
            record.update(index=index, job_id=payload.get("id") if isinstance(payload, dict) else None,
                          family=case.family, name=case.name, group=case.group, seconds=seconds,
                          leftovers=left, checkpoints=kept, peak_kb=sampler.take(), expect=list(case.expect))
            out.write(json.dumps(record) + "\n")
            out.flush()
    with results.open("a") as out:
        out.write(json.dumps({"done": True, "peak_kb": max(sampler.overall, sampler.take())}) + "\n")
    _release_fifos(env)


def _release_fifos(env: dict[str, Any]) -> None:
    """Open the FIFO's write end so a reader stuck on it (a hung case) can finish."""
    with contextlib.suppress(OSError):
        os.close(os.open(env["media"]["fifo"], os.O_WRONLY | os.O_NONBLOCK))


def baseline(env: dict[str, Any]) -> dict[str, Any]:
    """One normal small job (128x128 I2V, 1 s of audio, 2 steps) in this fresh process: its peak RSS."""
    import runpod

    runpod.serverless.progress_update = lambda *a, **k: None
    from talkgen.runtimes.runpod import handler

    os.environ.update(group_env(env, DEFAULT))
    sampler = RssSampler()
    sampler.start()
    m = env["media"]
    began = time.perf_counter()
    response = handler({"id": "baseline", "input": {"image_path": m["portrait"], "wav_path": m["speech"], "width": 128,
                                                    "height": 128, "steps": 2, "seed": 1}})
    seconds = time.perf_counter() - began
    return {"peak_kb": sampler.take(), "seconds": seconds, **classify(response, None)}
