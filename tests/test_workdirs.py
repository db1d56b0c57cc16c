"""Work directories name their owner; those of dead processes are swept when a service starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from talkgen.errors import InvalidConfig
from talkgen.service import TalkGen
from talkgen.shutdown import cancel_on_signals
from talkgen.workdirs import OWNER, make_workdir, sweep_stale


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root, name: str, owner: dict | None):  # type: ignore[no-untyped-def]
    path = root / f"talkgen-{name}-x1"
    path.mkdir()
    (path / "input_audio").write_bytes(b"\0" * 100)
    if owner is not None:
        (path / OWNER).write_text(json.dumps(owner))
    return path


def test_sweep_removes_only_folders_of_dead_processes_on_this_host(tmp_path):
    host = socket.gethostname()
    mine = make_workdir(tmp_path, "mine")
    dead = _folder(tmp_path, "dead", {"host": host, "pid": _dead_pid(), "started": 1})
    reused = _folder(tmp_path, "reused", {"host": host, "pid": os.getpid(), "started": -5})  # pid now someone else's
    elsewhere = _folder(tmp_path, "elsewhere", {"host": host + "-other", "pid": _dead_pid(), "started": 1})
    unknown = _folder(tmp_path, "unknown", None)
    checkpoints = tmp_path / "talkgen-checkpoints"
    checkpoints.mkdir()

    assert sorted(sweep_stale(tmp_path)) == sorted([dead, reused])
    assert all(p.exists() for p in (mine, elsewhere, unknown, checkpoints))
    assert not dead.exists() and not reused.exists()


def test_a_new_service_sweeps_its_work_root(settings, work_root):
    stale = _folder(work_root, "killed", {"host": socket.gethostname(), "pid": _dead_pid(), "started": 1})
    TalkGen(settings)
    assert not stale.exists()


def test_an_uncreatable_work_dir_is_invalid_config(settings, tmp_path, media_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    service = TalkGen(settings.model_copy(update={"work_dir": blocker / "work"}))
    with pytest.raises(InvalidConfig) as err:
        service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")})
    assert "TALKGEN_WORK_DIR" in err.value.message and not err.value.retryable


def test_sigterm_cancels_the_jobs_then_runs_the_previous_handler(settings):
    class Service:
        cancelled = 0

        def cancel_all(self) -> int:
            self.cancelled += 1
            return 1

    calls: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        service = Service()
        assert cancel_on_signals(service)  # type: ignore[arg-type]
        assert cancel_on_signals(service)  # type: ignore[arg-type]  # installing twice chains once
        os.kill(os.getpid(), signal.SIGTERM)
        assert service.cancelled == 1 and calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)
