"""A job killed mid-run resumes from its last finished window and yields the same video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import subprocess_env
from tests.native.conftest import SIZE
from tests.support.video_check import decode

JOB = "resume-me"


def _cli(native_media: Path, tiny_models: Path, work: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "talkgen.cli", "generate", "--engine", "native", "--image",
           str(native_media / "face.png"), "--audio", str(native_media / "long.wav"), "--width", str(SIZE),
           "--height", str(SIZE), "--seed", "11", "--job-id", JOB, "-o", str(out), "--json"]
    env = subprocess_env(TALKGEN_MODELS_DIR=str(tiny_models), TALKGEN_WORK_DIR=str(work),
                         TALKGEN_ALLOWED_PATH_ROOTS=str(native_media))
    return cmd, env


def test_sigkill_after_window_two_then_resume(native_service, native_media, tiny_models, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    state = work / "talkgen-checkpoints" / JOB / "state.json"
    cmd, env = _cli(native_media, tiny_models, work, tmp_path / "resumed.mp4")

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("windows_done") == 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["windows_done"] == 2, proc.stderr.read().decode()[-2000:]

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = json.loads(rerun.stdout)
    assert result["params"]["resumed_from_window"] == 2
    assert not state.parent.exists()  # a finished job leaves no checkpoint

    native_service.generate({"image_path": str(native_media / "face.png"), "wav_path": str(native_media / "long.wav"),
                             "width": SIZE, "height": SIZE, "seed": 11}, output=str(tmp_path / "straight.mp4"))
    resumed, straight = decode(tmp_path / "resumed.mp4"), decode(tmp_path / "straight.mp4")
    assert resumed.count == straight.count == 230
    assert all(np.array_equal(a, b) for a, b in zip(resumed.frames, straight.frames, strict=True))
    assert resumed.audio_duration == straight.audio_duration


def test_checkpoint_of_another_request_is_not_reused(native_settings, native_media, tmp_path):
    from talkgen.engines.native.run.checkpoint import Checkpoint

    url = str(tmp_path / "ck")
    first = Checkpoint(url, "fingerprint-a")
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 48, 3), dtype=np.uint8)
    first.save(0, frames, {"seed": 1})
    again = Checkpoint(url, "fingerprint-a")
    assert again.load().windows_done == 1
    assert np.array_equal(again.frames(0), frames)  # lossless
    assert Checkpoint(url, "fingerprint-b").load() is None
    assert not Path(url).exists()  # the stale checkpoint was removed


def test_checkpoints_on_s3(native_settings, native_media, tmp_path):
    """The checkpoint location is any fsspec URL: here a moto S3 server."""
    pytest.importorskip("s3fs")
    from talkgen.engines.native.run.checkpoint import Checkpoint
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        s3.filesystem().mkdir("ckpt")
        settings = native_settings.model_copy(update={"storage_options": {"s3": s3.storage_options}})
        frames = np.zeros((3, 16, 16, 3), np.uint8)
        Checkpoint("s3://ckpt/jobs/j1", "fp", settings).save(0, frames, {"seed": 4})
        again = Checkpoint("s3://ckpt/jobs/j1", "fp", settings)
        assert again.load().tensors["seed"] == 4 and np.array_equal(again.frames(0), frames)
        again.clear()
        assert Checkpoint("s3://ckpt/jobs/j1", "fp", settings).load() is None


def test_sigterm_cancels_cleans_up_and_keeps_the_checkpoint(native_media, tiny_models, tmp_path):
    """How platforms stop a worker: the job ends promptly as a retryable `cancelled`, its work directory is
    gone, and its checkpoint stays for the rerun."""
    work = tmp_path / "work"
    work.mkdir()
    state = work / "talkgen-checkpoints" / JOB / "state.json"
    cmd, env = _cli(native_media, tiny_models, work, tmp_path / "never.mp4")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not state.is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    error = json.loads(out)
    assert error["error_code"] == "cancelled" and error["retryable"] is True, error
    assert "Traceback" not in err
    assert [p.name for p in work.iterdir()] == ["talkgen-checkpoints"]  # the job's work directory is gone
    assert json.loads(state.read_text())["windows_done"] >= 1
    assert not (tmp_path / "never.mp4").exists()
