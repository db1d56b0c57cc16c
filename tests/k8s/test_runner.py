"""`talkgen k8s run` against moto S3: a 3-shard batch with one bad request, reruns that skip finished work,
and a runner stopped mid-request (SIGTERM, as Kubernetes stops a pod) that resumes from its checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import subprocess_env
from tests.k8s.conftest import SIZE, tiny_request
from tests.support.video_check import decode

pytestmark = pytest.mark.timeout(1800)  # CPU renders in subprocesses: room for a loaded box


def _upload_batch(fs: Any, url: str, lines: list[Any]) -> None:
    fs.pipe_file(url.removeprefix("s3://"), "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode())


def _decoded(fs: Any, url: str, tmp_path: Path) -> Any:
    local = tmp_path / Path(url).name
    local.write_bytes(fs.cat_file(url.removeprefix("s3://")))
    return decode(local)


def test_three_shards_one_bad_request(runner_settings, runner_media, moto_s3, tmp_path):
    from talkgen.k8s.runner import execute_shard

    fs = moto_s3.filesystem()
    fs.mkdir("batch-a")
    lines = [
        tiny_request(runner_media, job_id="alpha"),                    # shard 0
        tiny_request(runner_media, wav="short_low.wav", seed=5),       # shard 1 (key line-000002)
        tiny_request(runner_media, job_id="gamma", seed=7),            # shard 2
        tiny_request(runner_media, wav="short_low.wav", job_id="delta"),  # shard 0
        {"image_path": str(runner_media / "face.png"), "job_id": "no-audio"},  # shard 1: bad
    ]
    _upload_batch(fs, "s3://batch-a/in.jsonl", lines)
    reports = [execute_shard("s3://batch-a/in.jsonl", "s3://batch-a/out/", i, 3, runner_settings) for i in range(3)]

    assert [r.exit_code for r in reports] == [0, 42, 0], [r.to_dict() for r in reports]
    assert [(r.items, r.succeeded, r.failed, r.retryable, r.requests) for r in reports] == [
        (2, 2, 0, 0, 5), (2, 1, 1, 0, 5), (1, 1, 0, 0, 5)]

    bad = json.loads(fs.cat_file("batch-a/out/no-audio.json"))
    assert bad["status"] == "failed" and bad["line"] == 5 and bad["key"] == "no-audio"
    assert bad["response"]["error_code"] == "missing_media" and bad["response"]["retryable"] is False
    assert "wav" in bad["response"]["error"]
    assert not fs.exists("batch-a/out/no-audio.mp4")

    for key in ("alpha", "line-000002", "gamma", "delta"):
        record = json.loads(fs.cat_file(f"batch-a/out/{key}.json"))
        assert record["status"] == "succeeded" and record["response"]["video_url"] == f"s3://batch-a/out/{key}.mp4"
        assert record["response"]["job_id"] == key
        video = _decoded(fs, record["response"]["video_url"], tmp_path)
        assert (video.count, video.width, video.height) == (40, SIZE, SIZE)
        assert video.audio_duration == pytest.approx(1.6, abs=0.05)
    fs.invalidate_cache()
    assert not fs.exists("batch-a/out/.checkpoints") or not fs.ls("batch-a/out/.checkpoints")

    # A retried pod skips every request with a final record: no engine is even built (these weights are absent).
    broken = runner_settings.model_copy(update={"models_dir": tmp_path / "no-weights"})
    started = time.perf_counter()
    again = [execute_shard("s3://batch-a/in.jsonl", "s3://batch-a/out", i, 3, broken) for i in (0, 1)]
    assert time.perf_counter() - started < 30
    assert [(r.exit_code, r.skipped, r.succeeded, r.failed) for r in again] == [(0, 2, 2, 0), (42, 2, 1, 1)]
    assert all(not r.results for r in again)


def test_a_worker_that_cannot_start_writes_no_records(runner_settings, runner_media, moto_s3, tmp_path):
    """Missing weights are the worker's fault: exit 78 and nothing recorded against the requests."""
    from talkgen.k8s.runner import execute_shard

    fs = moto_s3.filesystem()
    fs.mkdir("batch-b")
    _upload_batch(fs, "s3://batch-b/in.jsonl", [tiny_request(runner_media, job_id="one")])
    broken = runner_settings.model_copy(update={"models_dir": tmp_path / "no-weights"})
    report = execute_shard("s3://batch-b/in.jsonl", "s3://batch-b/out", 0, 1, broken)
    assert report.exit_code in (75, 78) and report.error is not None, report.to_dict()
    assert report.error["error_code"] in ("engine_unavailable", "invalid_config")
    fs.invalidate_cache()
    assert not fs.exists("batch-b/out/one.json")


def _state(fs: Any, path: str) -> dict[str, Any]:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return {}


def test_stopped_runner_resumes_from_its_checkpoint(runner_settings, runner_models, runner_media, moto_s3, tmp_path):
    """SIGTERM mid-request: exit 75, the finished request's record stays, the interrupted one has none but a
    checkpoint; the rerun skips the first, resumes the second and makes the same video as a straight run."""
    fs = moto_s3.filesystem()
    fs.mkdir("batch-c")
    long_request = tiny_request(runner_media, wav="long.wav", seed=11, job_id="long")
    _upload_batch(fs, "s3://batch-c/in.jsonl", [tiny_request(runner_media, job_id="first"), long_request])
    cmd = [sys.executable, "-m", "talkgen.k8s.run_cli", "--requests", "s3://batch-c/in.jsonl",
           "--output", "s3://batch-c/out/", "--shards", "1", "--json"]
    env = subprocess_env(
        TALKGEN_MODELS_DIR=str(runner_models), TALKGEN_ALLOWED_PATH_ROOTS=str(runner_media),
        TALKGEN_WORK_DIR=str(runner_settings.work_dir), TALKGEN_URL_RETRIES="0",
        TALKGEN_STORAGE_OPTIONS=json.dumps({"s3": moto_s3.storage_options}), JOB_COMPLETION_INDEX="0",
    )
    state = "batch-c/out/.checkpoints/long/state.json"

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None and not _state(fs, state).get("windows_done"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, out[-3000:] + err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped"] and summary["succeeded"] == 1 and summary["exit_code"] == 75
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    assert json.loads(fs.cat_file("batch-c/out/first.json"))["status"] == "succeeded"
    fs.invalidate_cache()
    assert not fs.exists("batch-c/out/long.json") and not fs.exists("batch-c/out/long.mp4")
    windows = _state(fs, state)["windows_done"]
    assert 1 <= windows < 3

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["skipped"], summary["succeeded"], summary["exit_code"]) == (1, 2, 0)
    record = json.loads(fs.cat_file("batch-c/out/long.json"))
    assert record["status"] == "succeeded" and record["response"]["params"]["resumed_from_window"] == windows
    fs.invalidate_cache()
    assert not fs.exists(state)  # a delivered video leaves no checkpoint

    from talkgen.service import TalkGen

    straight_service = TalkGen(runner_settings)
    try:
        straight_service.generate({k: v for k, v in long_request.items() if k != "job_id"},
                                  output=str(tmp_path / "straight.mp4"))
    finally:
        straight_service.close()
    resumed, straight = _decoded(fs, record["response"]["video_url"], tmp_path), decode(tmp_path / "straight.mp4")
    assert resumed.count == straight.count == 230
    assert all(np.array_equal(a, b) for a, b in zip(resumed.frames, straight.frames, strict=True))
    assert resumed.audio_duration == straight.audio_duration
