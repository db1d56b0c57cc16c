"""A call on a multi-GPU container (``TALKGEN_MODAL_GPU=H100:2``): the native engine splits each video over
the GPUs with context parallelism, which needs one process per GPU under ``torchrun``. A Modal method is one
process, so each call starts ``torchrun`` with `talkgen.modal.rank` and reads rank 0's result: the engine is
loaded for every call (no warm engine across calls), which pays off only for long videos.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talkgen.errors import Cancelled, EngineFailed
from talkgen.modal.rank import EVENT_MARK, PROGRESS_MARK
from talkgen.progress import ProgressEvent


def torchrun_command(gpus: int, job_file: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "talkgen.modal.rank", job_file]


def generate_on_gpus(request: dict[str, Any], output: str | None, job_id: str, gpus: int,
                     progress: Callable[[ProgressEvent], None] | None = None,
                     cancel: threading.Event | None = None,
                     on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one request over ``gpus`` ranks; returns rank 0's response or error dict. Rank 0's progress and
    segment events are relayed to ``progress`` and ``on_event``. ``cancel`` stops the ranks (SIGTERM: they
    keep their checkpoint)."""
    with tempfile.TemporaryDirectory(prefix="talkgen-cp-") as tmp:
        job_file, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps({"request": request, "output": output, "job_id": job_id,
                                        "result": str(result)}))
        proc = subprocess.Popen(torchrun_command(gpus, str(job_file)), stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        watcher = threading.Thread(target=_stop_on, args=(cancel, proc), daemon=True) if cancel else None
        if watcher:
            watcher.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                _relay(line, job_id, progress, on_event)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the call itself was cancelled (Modal raises InputCancellation here)
                _terminate(proc)
        if cancel is not None and cancel.is_set():
            raise Cancelled("The job was cancelled.")
        if result.is_file():
            return json.loads(result.read_text())
        raise EngineFailed(f"The {gpus} torchrun ranks exited with code {code} before rank 0 wrote a result; "
                           "the container log has their output.")


def _relay(line: str, job_id: str, progress: Callable[[ProgressEvent], None] | None,
           on_event: Callable[[dict[str, Any]], None] | None) -> None:
    """Pass rank 0's marked lines on (a malformed one is dropped: progress never fails a job); print the rest."""
    _, is_progress, data = line.partition(PROGRESS_MARK)
    if not is_progress:
        _, is_event, data = line.partition(EVENT_MARK)
        if not is_event:
            sys.stdout.write(line)
            return
    try:
        event = json.loads(data)
        if is_progress and progress is not None:
            progress(ProgressEvent(job_id, event["stage"], event["fraction"], event.get("message", ""),
                                   eta_s=event.get("eta_s")))
        elif not is_progress and on_event is not None:
            on_event(event)
    except (ValueError, KeyError, TypeError):
        pass


def _stop_on(cancel: threading.Event, proc: subprocess.Popen[str]) -> None:
    while proc.poll() is None:
        if cancel.wait(0.5):
            _terminate(proc)
            return


def _terminate(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
