"""The RunPod worker through the SDK's own FastAPI app, its job runner and `--test_input`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_no_leftovers, subprocess_env
from tests.support.video_check import decode

pytest.importorskip("runpod")


@pytest.fixture
def worker(service, monkeypatch):
    """The runtime module with its warm service replaced by one using the test settings."""
    from talkgen.runtimes import runpod as rp

    monkeypatch.setattr(rp, "_service", service)
    return rp


@pytest.fixture
def client(worker):
    from fastapi.testclient import TestClient
    from runpod.serverless.modules.rp_fastapi import WorkerAPI

    return TestClient(WorkerAPI({"handler": worker.handler}).rp_app)


def _request(media_dir: Path, **extra) -> dict:
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
            "width": 128, "height": 128, **extra}


def test_runsync_returns_the_seed_shaped_video(client, media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    body = client.post("/runsync", json={"input": _request(media_dir, seed=7)}).json()
    assert body["status"] == "COMPLETED", body
    out = body["output"]
    assert out["video"].startswith("data:video/mp4;base64,")
    assert out["frames"] == 50 and out["seed"] == 7 and out["mode"] == "I2V_single"
    assert set(out["timings"]) >= {"fetch", "prepare", "generate", "output"}
    from talkgen.result import TalkResult

    path = TalkResult(**{k: v for k, v in out.items()}).save(tmp_path / "o.mp4")
    video = decode(path)
    assert video.count == 50 and (video.width, video.height) == (128, 128) and video.audio_codec == "aac"
    assert_no_leftovers(work_root)


def test_runsync_validation_error_is_a_clear_failed_job(client, media_dir: Path, work_root: Path) -> None:
    req = _request(media_dir)
    del req["wav_path"]
    body = client.post("/runsync", json={"input": req}).json()
    assert body["status"] == "FAILED"
    assert body["error"].startswith("Mode I2V_single needs speaker 1's audio") and "`wav_url`" in body["error"]
    assert_no_leftovers(work_root)


def test_handler_error_fields_progress_and_warm_engine(worker, media_dir: Path, monkeypatch) -> None:
    import runpod

    sent = []
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, progress: sent.append(progress))
    first = worker.handler({"id": "job-1", "input": _request(media_dir)})
    second = worker.handler({"id": "job-2", "input": _request(media_dir)})
    assert first["job_id"] == "job-1" and second["params"]["engine_jobs"] == 2  # one engine, kept warm
    stages = [p["stage"] for p in sent]
    assert {"validate", "fetch", "prepare", "generate", "output"} <= set(stages)
    assert all(0 <= p["percent"] <= 100 for p in sent)
    bad = worker.handler({"id": "job-3", "input": {**_request(media_dir), "widht": 5}})
    assert bad["error_code"] == "invalid_request" and bad["retryable"] is False and "width" in bad["error"]
    assert "refresh_worker" not in bad
    assert worker.handler({"id": "x", "input": "not json"})["error_code"] == "invalid_request"


def test_request_log_line_hides_secrets(worker) -> None:
    line = worker._describe({"image_url": "https://user:s3cret@host.example/a.png?token=abc",
                             "wav_base64": "UklGR" * 1000, "prompt": "hi"})
    assert "s3cret" not in line and "token" not in line and "UklGR" not in line
    assert "https://host.example/a.png" in line and "wav_base64=<5000 chars>" in line


def test_test_input_flag_runs_one_job(media_dir: Path, work_root: Path) -> None:
    env = subprocess_env(TALKGEN_ENGINE="test-bars", TALKGEN_ALLOWED_PATH_ROOTS=str(media_dir),
                         TALKGEN_WORK_DIR=str(work_root))
    ok = subprocess.run([sys.executable, "-m", "talkgen.runtimes.runpod", "--test_input",
                         json.dumps({"input": _request(media_dir)})],
                        env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "data:video/mp4;base64," in ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "talkgen.runtimes.runpod", "--test_input",
                          json.dumps({"input": {"image_path": str(media_dir / "face.png")}})],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "needs speaker 1's audio" in bad.stdout + bad.stderr
    assert_no_leftovers(work_root)


def test_oversize_output_goes_to_the_bucket(client, worker, media_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    import httpx

    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        s3.filesystem().mkdir("rp-out")
        worker._service.settings = worker._service.settings.model_copy(update={
            "inline_output_limit_mb": 0.001, "output_url": "s3://rp-out/jobs/",
            "storage_options": {"s3": s3.storage_options}})
        body = client.post("/runsync", json={"input": _request(media_dir)}).json()
        assert body["status"] == "COMPLETED", body
        out = body["output"]
        assert "video" not in out and out["video_url"].startswith("s3://rp-out/jobs/")
        assert out["video_url"].endswith(f"{out['job_id']}.mp4")
        (tmp_path / "dl.mp4").write_bytes(httpx.get(out["presigned_url"], trust_env=False).content)
    assert decode(tmp_path / "dl.mp4").count == 50
