"""The RunPod worker's streaming: the generator handler, what the SDK's production loop makes of it, and the
plain handler's progress for a streaming request. (Over the SDK's local API server: tests/client/test_stream_runpod.py.)
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_no_leftovers
from tests.support.media_factory import make_wav
from tests.support.video_check import decode

WINDOWS = 3  # 7 s of speech at 25 fps: 175 frames, windows of 81 then 72 new frames
WINDOWED = "test-bars-windows"


def _bars_call_the_hook() -> bool:
    import inspect

    from tests.support.bar_engine import BarEngine

    return "window_done" in inspect.getsource(BarEngine.generate)


class WindowedBars:
    """The test engine (tests/support/bar_engine.py) calling the per-window hook as the real engines do:
    ``job.window_done(i)`` right after window i's new frames are written (only if it does not already)."""

    def __init__(self, settings: Any) -> None:
        from tests.support.bar_engine import BarEngine

        self.inner = BarEngine(settings)
        self.name, self.healthy = WINDOWED, True

    def generate(self, job: Any) -> None:
        if _bars_call_the_hook():
            self.inner.generate(job)
            return
        writer, done = job.writer, iter(range(len(job.windows)))

        class Cut:
            def write(self, frames: Any) -> None:
                writer.write(frames)
                job.window_done(next(done))

            def __getattr__(self, name: str) -> Any:
                return getattr(writer, name)

        job.writer = Cut()
        try:
            self.inner.generate(job)
        finally:
            job.writer = writer

    def close(self) -> None:
        self.inner.close()


class _WindowedPlugin:
    from talkgen.hookspecs import hookimpl

    @hookimpl
    def register_engines(self, register: Any) -> None:
        register(WINDOWED, WindowedBars, description="Test engine with a segment per window.")


def use_windowed_bars() -> None:
    from talkgen.plugins import register_plugin

    register_plugin(_WindowedPlugin(), name=WINDOWED)


def serve() -> None:
    """The RunPod worker with the windowed test engine registered (``python -c`` in the local-server tests)."""
    use_windowed_bars()
    from talkgen.runtimes.runpod import main

    main()


@pytest.fixture(autouse=True)
def _windowed_engine(_fresh_plugins: None) -> None:
    pytest.importorskip("runpod")  # here, not at import: other tests import the windowed engine from this module
    use_windowed_bars()


@pytest.fixture
def worker(service, monkeypatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    from talkgen.runtimes import runpod as rp

    (tmp_path / "volume").mkdir()
    monkeypatch.setattr(rp, "_service", service)
    monkeypatch.setattr(rp, "_config", {"handler": rp.handler})
    return rp


@pytest.fixture
def progress(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    import runpod

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, update: sent.append(dict(update)))
    return sent


def stream_request(media_dir: Path, **extra: Any) -> dict[str, Any]:
    make_wav(media_dir / "long.wav", seconds=7.0, freq=200.0)
    return {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"), "width": 128,
            "height": 128, "network_volume": True, "stream": True, "engine": WINDOWED, **extra}


def check_events(events: list[dict[str, Any]], response: dict[str, Any]) -> None:
    """Segment events in order, one per window, matching the response and files that decode."""
    from talkgen.runtimes.runpod import SEGMENT_FIELDS

    assert [e["window"] for e in events] == list(range(WINDOWS))
    assert [e["index"] for e in events] == list(range(WINDOWS))
    assert all(list(e) == list(SEGMENT_FIELDS) and e["event"] == "segment" for e in events), events
    assert {e["playlist"] for e in events} == {response["playlist"]}
    assert {e["job_id"] for e in events} == {response["job_id"]}
    assert sum(e["frames"] for e in events) == response["frames"] == 175
    assert events[0]["start"] == 0 and events[1]["start"] == pytest.approx(events[0]["seconds"])
    assert response["segments"] == WINDOWS
    for event in events:
        assert decode(Path(event["url"])).count == event["frames"]
    assert Path(response["playlist"]).read_text().rstrip().endswith("#EXT-X-ENDLIST")


def test_stream_handler_yields_each_segment_as_it_is_written(worker, media_dir: Path, progress, work_root: Path):  # type: ignore[no-untyped-def]
    import runpod

    second_segment = threading.Event()
    release = threading.Event()

    def update(job: dict[str, Any], value: dict[str, Any]) -> None:
        progress.append(dict(value))
        if value.get("segments") == 2 and not second_segment.is_set():  # the job holds before event 2 is queued
            second_segment.set()
            assert release.wait(60)

    runpod.serverless.progress_update = update
    items = worker.stream_handler({"id": "rp-stream-1", "input": stream_request(media_dir)})
    first = next(items)
    assert second_segment.wait(60)
    playlist = Path(first["playlist"])
    text = playlist.read_text()  # the job is still running: one segment listed, no end
    assert "segment-00000" in text and "#EXT-X-ENDLIST" not in text and text.count("#EXTINF") <= 2
    assert not (playlist.parent.parent / "talkgen_rp-stream-1.mp4").exists()
    release.set()
    rest = list(items)
    response = rest[-1]
    assert "event" not in response and response["video_path"].endswith("talkgen_rp-stream-1.mp4")
    check_events([first, *rest[:-1]], response)
    assert decode(Path(response["video_path"])).count == 175
    assert progress[-1]["playlist"] == response["playlist"] and progress[-1]["segments"] == WINDOWS
    assert_no_leftovers(work_root)


def test_same_response_as_the_plain_handler(worker, media_dir: Path, progress):  # type: ignore[no-untyped-def]
    plain = worker.handler({"id": "rp-plain", "input": stream_request(media_dir, seed=3)})
    streamed = list(worker.stream_handler({"id": "rp-gen", "input": stream_request(media_dir, seed=3)}))
    assert [e["event"] for e in streamed[:-1]] == ["segment"] * WINDOWS
    ignore = {"job_id", "timings", "video_path", "playlist", "params"}
    assert {k: v for k, v in streamed[-1].items() if k not in ignore} == \
        {k: v for k, v in plain.items() if k not in ignore}
    assert plain["playlist"].endswith("talkgen_rp-plain.hls/playlist.m3u8") and plain["segments"] == WINDOWS
    # the plain worker shows the playlist on /status as soon as the first segment exists
    with_playlist = [p for p in progress if "playlist" in p]
    assert with_playlist and with_playlist[0]["segments"] == 1 and with_playlist[-1]["segments"] == WINDOWS
    # a request that does not stream: no events, only the response (the list the SDK aggregates is [response])
    quiet = list(worker.stream_handler({"id": "rp-quiet", "input": {**stream_request(media_dir), "stream": False}}))
    assert len(quiet) == 1 and "playlist" not in quiet[0] and quiet[0]["video_path"].endswith("talkgen_rp-quiet.mp4")


def test_errors_are_the_last_item_without_a_traceback(worker, media_dir: Path, progress, work_root: Path):  # type: ignore[no-untyped-def]
    request = stream_request(media_dir)
    del request["wav_path"]
    out = list(worker.stream_handler({"id": "rp-bad", "input": request}))
    assert len(out) == 1 and out[0]["error_code"] == "missing_media" and out[0]["retryable"] is False
    inline = list(worker.stream_handler({"id": "rp-inline", "input": {**stream_request(media_dir),
                                                                        "network_volume": False}}))
    assert inline[-1]["error_code"] == "invalid_request" and inline[-1]["field"] == "stream"
    assert next(iter(worker.stream_handler({"id": "x", "input": "not json"})))["error_code"] == "invalid_request"
    assert_no_leftovers(work_root)


def test_closing_the_stream_cancels_the_job(worker, media_dir: Path, progress, work_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    items = worker.stream_handler({"id": "rp-close", "input": stream_request(media_dir)})
    first = next(items)
    assert first["index"] == 0
    items.close()  # the reader went away: the job is cancelled and waited for
    assert not (tmp_path / "volume" / "talkgen_rp-close.mp4").exists()
    assert_no_leftovers(work_root)


def run_production_job(worker: Any, job: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[list, dict]:
    """The SDK's production path for one job (``rp_job.handle_job``), its HTTP posts captured."""
    from runpod.serverless.modules import rp_job

    streamed: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def stream_result(session: Any, data: dict[str, Any], job: dict[str, Any]) -> None:
        streamed.append(data)

    async def send_result(session: Any, data: dict[str, Any], job: dict[str, Any], is_stream: bool = False) -> None:
        sent.append({"data": data, "is_stream": is_stream})

    monkeypatch.setattr(rp_job, "stream_result", stream_result)
    monkeypatch.setattr(rp_job, "send_result", send_result)
    asyncio.run(rp_job.handle_job(None, worker._config, job))
    assert len(sent) == 1
    return streamed, sent[0]


def test_the_sdk_production_loop_streams_and_aggregates(worker, media_dir: Path, progress, monkeypatch):  # type: ignore[no-untyped-def]
    worker._config.update(handler=worker.stream_handler, return_aggregate_stream=True)  # what main() sets
    streamed, done = run_production_job(worker, {"id": "rp-prod", "input": stream_request(media_dir)}, monkeypatch)
    outputs = [s["output"] for s in streamed]  # each POSTed to /stream as it happens
    assert [o.get("event") for o in outputs] == ["segment"] * WINDOWS + [None]
    assert done["is_stream"] is True and done["data"] == {"output": outputs}  # /status, /runsync: the list
    check_events(outputs[:-1], outputs[-1])

    request = stream_request(media_dir)
    del request["wav_path"]
    streamed, done = run_production_job(worker, {"id": "rp-prod-bad", "input": request}, monkeypatch)
    assert streamed == []  # an error is never streamed: the job FAILS with the message alone
    assert done["data"]["error"].startswith("Mode I2V_single needs speaker 1's audio")
    assert "Traceback" not in done["data"]["error"] and "stopPod" not in done["data"]


def test_a_broken_engine_refreshes_the_streaming_worker(worker, media_dir: Path, progress, monkeypatch):  # type: ignore[no-untyped-def]
    worker._config.update(handler=worker.stream_handler, return_aggregate_stream=True)
    monkeypatch.setattr(type(worker._service), "healthy", property(lambda self: False))
    request = stream_request(media_dir)
    del request["wav_path"]  # a failed job on a broken engine: as the plain handler, ask for a fresh worker
    _, done = run_production_job(worker, {"id": "rp-sick", "input": request}, monkeypatch)
    assert done["data"]["stopPod"] is True  # the SDK stops this worker after the job; a fresh one starts
    assert set(done["data"]) == {"error", "stopPod"}


def test_main_picks_the_handler(worker, monkeypatch):  # type: ignore[no-untyped-def]
    import runpod

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(runpod.serverless, "start", lambda config: started.append(dict(config)))
    monkeypatch.setattr(sys, "argv", ["worker"])
    monkeypatch.delenv("TALKGEN_RUNPOD_STREAM", raising=False)
    monkeypatch.delenv("RUNPOD_REALTIME_PORT", raising=False)
    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", "http://127.0.0.1:9/job-take/$ID")  # RunPod's job loop
    worker.main([])
    assert started[-1] == {"handler": worker.handler}
    monkeypatch.setenv("TALKGEN_RUNPOD_STREAM", "true")
    worker.main(["--test_input", "{}"])  # the SDK's local test mode calls the handler once: never a generator
    assert started[-1] == {"handler": worker.handler}
    worker.main([])
    assert started[-1] == {"handler": worker.stream_handler, "return_aggregate_stream": True}
    monkeypatch.setattr(worker, "_config", {"handler": worker.handler})
    worker.main(["--rp_serve_api"])
    assert started[-1]["handler"] is worker.stream_handler
    monkeypatch.setattr(worker, "_config", {"handler": worker.handler})
    monkeypatch.setenv("RUNPOD_REALTIME_PORT", "8080")
    worker.main([])
    assert started[-1] == {"handler": worker.handler}
    monkeypatch.delenv("RUNPOD_REALTIME_PORT")
    monkeypatch.delenv("TALKGEN_RUNPOD_STREAM")
    worker._service.settings = worker._service.settings.model_copy(update={"stream": True})  # TALKGEN_STREAM
    worker.main([])
    assert started[-1]["handler"] is worker.stream_handler
    monkeypatch.setenv("TALKGEN_RUNPOD_STREAM", "sometimes")
    with pytest.raises(SystemExit):
        worker.main([])


def test_segments_on_s3_come_as_presigned_links(worker, media_dir: Path, progress, tmp_path: Path):  # type: ignore[no-untyped-def]
    pytest.importorskip("s3fs")
    import httpx

    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        s3.filesystem().mkdir("rp-live")
        worker._service.settings = worker._service.settings.model_copy(update={
            "output_url": "s3://rp-live/jobs/", "storage_options": {"s3": s3.storage_options}})
        request = {**stream_request(media_dir), "network_volume": False}
        items = list(worker.stream_handler({"id": "rp-s3", "input": request}))
        events, response = items[:-1], items[-1]
        assert response["video_url"] == "s3://rp-live/jobs/rp-s3.mp4" and response["segments"] == WINDOWS
        assert [e["index"] for e in events] == list(range(WINDOWS))
        for event in events:  # each link works on its own, with no credentials: a player can fetch it
            assert event["url"].startswith("http://127.0.0.1:") and "Signature=" in event["url"]
            path = tmp_path / f"s{event['index']}.ts"
            path.write_bytes(httpx.get(event["url"], trust_env=False).content)
            assert decode(path).count == event["frames"]
        playlist = httpx.get(response["playlist"], trust_env=False).text
        assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
        assert [line for line in playlist.splitlines() if line.startswith("http")] and \
            all("Signature=" in line for line in playlist.splitlines() if line.startswith("http"))


def test_test_input_on_a_streaming_worker_runs_the_job(media_dir: Path, work_root: Path, tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.conftest import subprocess_env

    (tmp_path / "volume").mkdir()
    env = subprocess_env(TALKGEN_ALLOWED_PATH_ROOTS=str(media_dir), TALKGEN_WORK_DIR=str(work_root),
                         TALKGEN_VOLUME_DIR=str(tmp_path / "volume"), TALKGEN_RUNPOD_STREAM="true")
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    job = {"input": stream_request(media_dir)}
    ran = subprocess.run([sys.executable, "-c", "from tests.test_runpod_stream import serve; serve()",
                          "--test_input", json.dumps(job)], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "generator object" not in ran.stdout + ran.stderr
    assert "talkgen_local_test.hls/playlist.m3u8" in ran.stdout + ran.stderr
    assert decode(tmp_path / "volume" / "talkgen_local_test.mp4").count == 175
    assert_no_leftovers(work_root)



def test_sigterm_cancels_a_streaming_job(worker, media_dir: Path, progress, work_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The platform stops the worker mid-job: the handler (installed by the generator in the SDK's thread, not
    the job's) cancels the job, which answers ``cancelled`` as the last item."""
    import os
    import signal

    import runpod

    held, release = threading.Event(), threading.Event()

    def update(job: dict[str, Any], value: dict[str, Any]) -> None:
        if value.get("segments") == 2 and not held.is_set():  # event 1 is queued, the job holds in window 2
            held.set()
            assert release.wait(60)

    runpod.serverless.progress_update = update
    saved = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what runs after talkgen's handler
    try:
        items = worker.stream_handler({"id": "rp-term", "input": stream_request(media_dir)})
        first = next(items)
        assert held.wait(60)
        assert getattr(signal.getsignal(signal.SIGTERM), "_talkgen_cancels_jobs", False)
        os.kill(os.getpid(), signal.SIGTERM)
        release.set()
        rest = list(items)
    finally:
        release.set()
        signal.signal(signal.SIGTERM, saved)
    assert first["index"] == 0 and [e.get("event") for e in rest[:-1]] == ["segment"] * (len(rest) - 1)
    assert rest[-1]["error_code"] == "cancelled" and rest[-1]["retryable"] is True
    assert not (tmp_path / "volume" / "talkgen_rp-term.mp4").exists()
    assert_no_leftovers(work_root)
