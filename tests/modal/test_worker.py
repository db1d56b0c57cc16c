"""The container-side worker: where videos go, a misconfigured container, progress records."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkgen.errors import InvalidConfig
from talkgen.modal.settings import ModalSettings
from talkgen.modal.worker import ProgressWriter, Worker
from talkgen.progress import ProgressEvent
from tests.modal.conftest import tiny_request
from tests.support.video_check import decode


@pytest.fixture
def worker(bar_settings):  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen

    service = TalkGen(bar_settings)
    commits: list[int] = []
    worker = Worker(ModalSettings(), service=service, commit=lambda: commits.append(1))
    worker.commits = commits  # type: ignore[attr-defined]
    yield worker
    service.close()


def test_never_inline_and_the_volume_is_committed(worker: Worker, modal_media: Path, bar_settings):  # type: ignore[no-untyped-def]
    response = worker.generate(tiny_request(modal_media), call_id="fc-abc")
    assert "video" not in response and response["video_path"] == str(bar_settings.volume_dir / "fc-abc.mp4")
    assert decode(Path(response["video_path"])).count == 40
    assert worker.commits == [1]  # type: ignore[attr-defined]
    # network_volume: true is the same volume, under the service's own name
    response = worker.generate(tiny_request(modal_media, network_volume=True), call_id="fc-nv")
    assert response["video_path"] == str(bar_settings.volume_dir / "talkgen_fc-nv.mp4")
    # a job_id in the request names the file
    response = worker.generate(tiny_request(modal_media, job_id="mine"), call_id="fc-x")
    assert response["video_path"] == str(bar_settings.volume_dir / "mine.mp4") and response["job_id"] == "mine"


def test_destinations(worker: Worker, bar_settings):  # type: ignore[no-untyped-def]
    tg = worker.service
    assert worker.destination(tg, None, "fc-1") == str(bar_settings.volume_dir / "fc-1.mp4")  # type: ignore[arg-type]
    assert worker.destination(tg, "s3://b/x/", "fc-1") is None  # type: ignore[arg-type]  # the request's, checked later
    tg.settings = bar_settings.model_copy(update={"output_url": "s3://bucket/talkgen/"})  # type: ignore[union-attr]
    assert worker.destination(tg, None, "fc-1") == "s3://bucket/talkgen/fc-1.mp4"  # type: ignore[arg-type]


def test_request_output_url_is_untrusted(worker: Worker, modal_media: Path, tmp_path: Path):
    response = worker.generate(tiny_request(modal_media, output_url=str(tmp_path / "elsewhere" / "x.mp4")))
    assert response["error_code"] == "forbidden_source" and response["field"] == "output_url"


def test_misconfigured_container(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TALKGEN_MAX_DURATION_S", "-1")
    monkeypatch.setenv("TALKGEN_WARMUP", "false")
    worker = Worker(ModalSettings())
    worker.start()  # no warm-up asked: the container starts, and each call says what is wrong
    response = worker.generate({"image_path": "a.png", "wav_path": "a.wav"})
    assert response["error_code"] == "invalid_config" and "TALKGEN_MAX_DURATION_S" in response["error"]
    monkeypatch.setenv("TALKGEN_WARMUP", "true")
    with pytest.raises(InvalidConfig):  # warm-up asked: the container fails to start, with the message
        Worker(ModalSettings()).start()


def test_progress_writer_throttles_and_never_fails():
    store: dict[str, object] = {}
    writer = ProgressWriter(store, "fc-1")
    writer(ProgressEvent("j", "generate", 0.1))
    writer(ProgressEvent("j", "generate", 0.2))  # same stage within 2 s: skipped
    assert store["fc-1"] == {"stage": "generate", "fraction": 0.1, "percent": 20, "message": ""}
    writer(ProgressEvent("j", "output", 0.5, "uploading"))
    assert store["fc-1"]["stage"] == "output"  # type: ignore[index]

    class Broken(dict):
        def __setitem__(self, key: str, value: object) -> None:
            raise ConnectionError("modal.Dict unreachable")

    ProgressWriter(Broken(), "fc-2")(ProgressEvent("j", "fetch", 0.0))  # no exception
