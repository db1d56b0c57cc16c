"""Streaming on Modal: `Worker.generate_stream` (the app's generator method ``generate_stream``) yields each HLS
segment event then the response; the job API's progress names the playlist while the job runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from talkgen.modal.settings import ModalSettings
from talkgen.modal.worker import Worker
from tests.modal.conftest import load_app, tiny_request
from tests.support.media_factory import make_wav
from tests.support.video_check import decode
from tests.test_runpod_stream import WINDOWED, use_windowed_bars

SEGMENT_FIELDS = ["event", "job_id", "window", "index", "url", "playlist", "frames", "seconds", "start"]


@pytest.fixture(autouse=True)
def _windowed_engine(_fresh_plugins: None) -> None:
    use_windowed_bars()


@pytest.fixture
def long_wav(modal_media: Path) -> Path:
    path = modal_media / "long.wav"
    if not path.exists():
        make_wav(path, seconds=7.0, freq=200.0)  # 175 frames: 3 windows
    return path


def test_generate_stream_yields_segments_then_the_response(bar_settings, modal_media: Path, long_wav: Path):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen

    writes: list[dict[str, Any]] = []

    class Recorded(dict):
        def __setitem__(self, key: str, value: Any) -> None:
            writes.append(dict(value))
            super().__setitem__(key, value)

    store = Recorded()
    service = TalkGen(bar_settings)
    try:
        worker = Worker(ModalSettings(), progress_store=store, service=service)
        request = tiny_request(modal_media, wav_path=str(long_wav), engine=WINDOWED, stream=True)
        items = list(worker.generate_stream(request, call_id="fc-stream"))
        events, response = items[:-1], items[-1]
        assert [list(e) for e in events] == [SEGMENT_FIELDS] * 3
        assert [(e["window"], e["index"], e["frames"]) for e in events] == [(0, 0, 81), (1, 1, 72), (2, 2, 22)]
        hls = bar_settings.volume_dir / "fc-stream.hls"
        assert response["video_path"] == str(bar_settings.volume_dir / "fc-stream.mp4")
        assert response["playlist"] == str(hls / "playlist.m3u8") and response["segments"] == 3
        assert [e["url"] for e in events] == [str(hls / f"segment-{i:05d}.ts") for i in range(3)]
        assert [decode(Path(e["url"])).count for e in events] == [81, 72, 22]
        assert decode(Path(response["video_path"])).count == 175
        # the progress records (what GET /jobs/{id} shows) name the playlist from the first segment on
        named = [w for w in writes if "playlist" in w]
        assert [w["segments"] for w in named][:1] == [1] and named[-1]["segments"] == 3
        assert store["fc-stream"]["percent"] == 100 and store["fc-stream"]["playlist"] == response["playlist"]
        assert all("playlist" not in w for w in writes[: len(writes) - len(named)])

        # no stream asked: only the response; an error: only the error dict (never an exception)
        quiet = list(worker.generate_stream(tiny_request(modal_media, engine=WINDOWED), call_id="fc-quiet"))
        assert len(quiet) == 1 and quiet[0]["video_path"].endswith("fc-quiet.mp4") and "playlist" not in quiet[0]
        bad = list(worker.generate_stream({"image_path": str(modal_media / "face.png"), "stream": True}))
        assert len(bad) == 1 and bad[0]["error_code"] == "missing_media"
    finally:
        service.close()


def test_job_api_progress_shows_the_playlist_while_the_job_runs(bar_settings, modal_media: Path, long_wav: Path):  # type: ignore[no-untyped-def]
    from talkgen.modal.jobs_api import build_job_api
    from talkgen.service import TalkGen
    from tests.modal.local_jobs import LocalJobs
    from tests.modal.test_jobs_api import Server, poll

    class HoldAtFirstSegment(dict):
        release = threading.Event()

        def __setitem__(self, key: str, value: Any) -> None:
            super().__setitem__(key, value)
            if isinstance(value, dict) and value.get("segments") == 1:
                self.release.wait(30)

    store = HoldAtFirstSegment()
    service = TalkGen(bar_settings)
    jobs = LocalJobs(Worker(ModalSettings(), progress_store=store, service=service))
    try:
        with Server(build_job_api(jobs.spawn, jobs.lookup, jobs.cancel, store)) as client:
            request = tiny_request(modal_media, wav_path=str(long_wav), engine=WINDOWED, stream=True)
            job_id = client.post("/jobs", json={"input": request}).json()["id"]
            running = poll(client, job_id, {"IN_PROGRESS"})
            while "playlist" not in (running["progress"] or {}):
                running = poll(client, job_id, {"IN_PROGRESS"})
            playlist = bar_settings.volume_dir / f"{job_id}.hls" / "playlist.m3u8"
            assert running["progress"]["playlist"] == str(playlist) and running["progress"]["segments"] == 1
            assert "#EXT-X-ENDLIST" not in playlist.read_text() and "output" not in running
            store.release.set()
            done = poll(client, job_id, {"COMPLETED", "FAILED"})
            assert done["status"] == "COMPLETED", done
            assert done["output"]["playlist"] == str(playlist) and done["output"]["segments"] == 3
            assert done["progress"]["segments"] == 3 and done["progress"]["percent"] == 100
    finally:
        store.release.set()
        jobs.close()
        service.close()


@pytest.fixture
def native_env(monkeypatch: pytest.MonkeyPatch, tiny_models: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The container's settings on the tiny native weights; (media dir, outputs volume)."""
    from tests.support.media_factory import make_image

    media, volume = tmp_path / "media", tmp_path / "outputs"
    media.mkdir()
    volume.mkdir()
    make_image(media / "face.png", 160, 128)
    make_wav(media / "speech.wav", seconds=3.6, freq=330.0)  # 90 frames: 2 windows (81, then 9 new)
    for name, value in {"TALKGEN_ENGINE": "native", "TALKGEN_MODELS_DIR": str(tiny_models),
                        "TALKGEN_ALLOWED_PATH_ROOTS": str(media), "TALKGEN_WORK_DIR": str(tmp_path / "work"),
                        "TALKGEN_VOLUME_DIR": str(volume), "TALKGEN_OUTPUT_ROOTS": str(volume),
                        "TALKGEN_WARMUP": "false"}.items():
        monkeypatch.setenv(name, value)
    return media, volume


@pytest.mark.filterwarnings("ignore:The TalkGenWorker.generate_stream function is executing locally")
def test_app_generator_method_streams_the_native_engine_locally(native_env: tuple[Path, Path]) -> None:
    media, volume = native_env
    module = load_app()
    request = {"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"), "width": 128,
               "height": 128, "seed": 3, "stream": True, "job_id": "native-stream"}
    items = list(module.TalkGenWorker().generate_stream.local(request))
    events, response = items[:-1], items[-1]
    assert "error" not in response, response
    assert [(e["event"], e["window"], e["index"], e["frames"]) for e in events] == [("segment", 0, 0, 81),
                                                                                  ("segment", 1, 1, 9)]
    assert response["video_path"] == str(volume / "native-stream.mp4") and response["segments"] == 2
    assert response["playlist"] == str(volume / "native-stream.hls" / "playlist.m3u8")
    assert [decode(Path(e["url"])).count for e in events] == [81, 9]
    assert decode(Path(response["video_path"])).count == 90
