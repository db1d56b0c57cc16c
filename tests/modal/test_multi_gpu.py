"""TALKGEN_MODAL_GPU=TYPE:N (N > 1): each call runs N torchrun ranks with context parallelism. Here the ranks are
two CPU processes (gloo) on the tiny preset, as tests/native/test_parallel.py runs the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from talkgen.modal.multi_gpu import torchrun_command
from talkgen.modal.settings import ModalSettings
from talkgen.modal.worker import Worker
from tests.modal.conftest import tiny_request
from tests.support.video_check import decode


class Recording(dict):
    def __init__(self) -> None:
        super().__init__()
        self.stages: list[str] = []

    def __setitem__(self, key: str, value: dict) -> None:
        super().__setitem__(key, value)
        self.stages.append(value["stage"])


def test_command():
    assert torchrun_command(4, "/tmp/job.json") == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m",
        "talkgen.modal.rank", "/tmp/job.json"]


def test_two_ranks_make_one_video(monkeypatch: pytest.MonkeyPatch, tiny_models: Path, modal_media: Path,
                                  tmp_path: Path):
    volume = tmp_path / "outputs"
    volume.mkdir()
    for name, value in {"TALKGEN_ENGINE": "native", "TALKGEN_MODELS_DIR": str(tiny_models),
                        "TALKGEN_ALLOWED_PATH_ROOTS": str(modal_media), "TALKGEN_WORK_DIR": str(tmp_path / "work"),
                        "TALKGEN_VOLUME_DIR": str(volume), "TALKGEN_OUTPUT_ROOTS": str(volume),
                        "TALKGEN_WARMUP": "true", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    store = Recording()
    worker = Worker(ModalSettings(gpu=["H100:2"]), progress_store=store)
    worker.start()  # builds the service but loads no engine: the ranks do
    assert worker.service is not None and worker.service._engines == {}

    response = worker.generate(tiny_request(modal_media), call_id="fc-cp")
    assert "error" not in response, response
    assert response["video_path"] == str(volume / "fc-cp.mp4") and response["job_id"] == "fc-cp"
    video = decode(Path(response["video_path"]))
    assert (video.count, video.width, video.height) == (40, 128, 128)
    assert store["fc-cp"] == {"stage": "output", "fraction": 1.0, "percent": 100, "message": "done"}
    assert {"fetch", "load", "generate", "output"} <= set(store.stages)  # rank 0's progress, relayed
    assert sorted(p.name for p in volume.iterdir()) == ["fc-cp.mp4"]  # rank 1's copy went to a temp dir

    events: list[dict] = []  # a streaming job: rank 0's segment events reach the caller and the progress
    streamed = worker.generate(tiny_request(modal_media, stream=True), call_id="fc-live", on_event=events.append)
    assert "error" not in streamed, streamed
    playlist = volume / "fc-live.hls" / "playlist.m3u8"
    assert streamed["playlist"] == str(playlist) and streamed["segments"] == 1
    assert [(e["event"], e["index"], e["frames"], e["playlist"]) for e in events] == [
        ("segment", 0, 40, str(playlist))]
    assert playlist.read_text().endswith("#EXT-X-ENDLIST\n")
    assert store["fc-live"]["playlist"] == str(playlist) and store["fc-live"]["segments"] == 1

    bad = worker.generate({"image_path": str(modal_media / "face.png")}, call_id="fc-bad")  # refused before torchrun
    assert bad["error_code"] == "missing_media"
    worker.stop()
