"""SIGTERM between requests: the one in progress finishes and is recorded, the next never starts, exit 75.
(A stand-in service: no engine; the real engine's mid-request stop is in test_runner.py.)"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from talkgen.result import TalkResult
from talkgen.settings import Settings


class _Service:
    default_engine = "native"
    healthy = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ran: list[str] = []
        self.cancelled = 0

    def validate(self, request: dict[str, Any]) -> Any:
        return SimpleNamespace(engine=None)

    def warm_up(self, engine: str | None = None) -> str:
        return "ready"

    def cancel_all(self) -> int:
        self.cancelled += 1
        return 0

    def generate(self, request: dict[str, Any], *, output: str, job_id: str, progress: Any = None,
                 cancel: threading.Event | None = None) -> TalkResult:
        self.ran.append(job_id)
        os.kill(os.getpid(), signal.SIGTERM)  # the pod is told to stop while this request renders
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(b"mp4")
        return TalkResult(job_id=job_id, mode="i2v", engine="native", width=8, height=8, fps=25, frames=1,
                          duration=0.04, seed=0, video_path=output, size_bytes=3)


def test_sigterm_between_requests_stops_the_shard(tmp_path):
    from talkgen.k8s.runner import execute_shard

    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps({"job_id": f"r{i}"}) + "\n" for i in range(3)))
    before = signal.getsignal(signal.SIGTERM)
    service = _Service(Settings())
    lines: list[str] = []
    report = execute_shard(str(batch), str(tmp_path / "out"), 0, 1, Settings(), service=service,  # type: ignore[arg-type]
                           echo=lines.append)
    assert service.ran == ["r0"] and service.cancelled == 1
    assert (report.exit_code, report.stopped, report.succeeded) == (75, True, 1), lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r0.json", "r0.mp4"]
    assert any("stopping: 2 requests left" in line for line in lines)
    assert signal.getsignal(signal.SIGTERM) == before  # the runner put the previous handler back


def test_long_requests_log_progress_now_and_then(monkeypatch):
    import talkgen.k8s.runner as runner
    from talkgen.progress import ProgressEvent

    lines: list[str] = []
    progress = runner._Progress("[shard 0/1] line 1 k", lines.append)
    progress(ProgressEvent("k", "generate", 0.5, "window 2/4"))
    assert lines == []  # not yet: at most one line per PROGRESS_EVERY_S
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.0)
    progress(ProgressEvent("k", "generate", 0.5, "window 2/4"))
    assert lines == ["[shard 0/1] line 1 k: 53% generate window 2/4"]
