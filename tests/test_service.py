"""TalkGen end to end with the test engine: speakers, V2V timing, progress, cancel, engine failures."""

from __future__ import annotations

import threading
import types
from pathlib import Path

import numpy as np
import pytest

from talkgen import hookimpl
from talkgen.errors import TalkgenError
from talkgen.plugins import register_plugin, unregister_plugin
from tests.conftest import assert_no_leftovers
from tests.support.bar_engine import BAR_WIDTH
from tests.support.media_factory import make_video
from tests.support.video_check import decode


def _bar_level(frame: np.ndarray, speaker: int) -> float:
    x0 = 0 if speaker == 0 else frame.shape[1] - BAR_WIDTH
    column = frame[:, x0 + 2:x0 + BAR_WIDTH - 2].mean(axis=(1, 2))
    return float((column > 128).mean())


def _two_speakers(media_dir: Path, audio_type: str) -> dict:
    return {"person_count": "multi", "audio_type": audio_type, "image_path": str(media_dir / "face.png"),
            "wav_path": str(media_dir / "speech.wav"), "wav_path_2": str(media_dir / "speech2.wav"),
            "width": 128, "height": 128}


def test_add_puts_speaker_two_after_speaker_one(service, media_dir: Path, tmp_path: Path) -> None:
    result = service.generate(_two_speakers(media_dir, "add"), output=tmp_path / "add.mp4")
    video = decode(tmp_path / "add.mp4")
    assert result.frames == video.count == 80 and result.audio_type == "add"  # 2.0 s then 1.2 s
    first = [(_bar_level(f, 0), _bar_level(f, 1)) for f in video.frames[5:45]]
    second = [(_bar_level(f, 0), _bar_level(f, 1)) for f in video.frames[55:75]]
    assert max(b for _, b in first) == 0 and max(a for a, _ in first) > 0.2
    assert max(a for a, _ in second) == 0 and max(b for _, b in second) > 0.2
    assert abs(video.audio_duration - 3.2) < 0.05


def test_para_overlaps_and_pads_the_shorter(service, media_dir: Path, tmp_path: Path) -> None:
    result = service.generate(_two_speakers(media_dir, "para"), output=tmp_path / "para.mp4")
    video = decode(tmp_path / "para.mp4")
    assert result.frames == video.count == 50
    both = [(_bar_level(f, 0), _bar_level(f, 1)) for f in video.frames[5:25]]
    assert max(a for a, _ in both) > 0.2 and max(b for _, b in both) > 0.2
    assert max(_bar_level(f, 1) for f in video.frames[33:50]) == 0  # speaker 2 stopped at 1.2 s


def test_v2v_windows_follow_the_source_at_its_real_fps(service, media_dir: Path, tmp_path: Path) -> None:
    make_video(media_dir / "long30.mp4", seconds=4.0, fps=30, width=192, height=128)
    from tests.support.media_factory import make_wav

    make_wav(media_dir / "four.wav", seconds=4.0)
    result = service.generate({"input_type": "video", "video_path": str(media_dir / "long30.mp4"),
                               "wav_path": str(media_dir / "four.wav"), "width": 192, "height": 128},
                              output=tmp_path / "v2v.mp4")
    video = decode(tmp_path / "v2v.mp4")
    assert result.frames == video.count == 100 and (video.width, video.height) == (192, 128)
    # Window 2 starts at output frame 72 = 2.88 s: source frame floor(72 * 30 / 25) = 86 of 120,
    # whose moving bar sits at x = 86 * (192 - 8) / 119.
    expected_x = int(86 * 184 / 119)
    frame = video.frames[90].astype(float)
    columns = frame[40:88, BAR_WIDTH:-BAR_WIDTH].mean(axis=(0, 2))
    assert abs(int(np.argmax(columns)) + BAR_WIDTH - expected_x) <= 4


def test_progress_is_ordered_and_complete(service, media_dir: Path) -> None:
    events = []
    service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                      "width": 128, "height": 128}, progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "validate" and stages[-1] == "output"
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == \
        ["validate", "fetch", "prepare", "load", "generate", "output"]
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == 1.0


def test_cancel_during_generation(service, media_dir: Path, work_root: Path) -> None:
    cancel = threading.Event()

    def on_progress(event) -> None:
        if event.stage == "generate":
            cancel.set()

    from tests.support.media_factory import make_wav

    make_wav(media_dir / "long.wav", seconds=8.0)
    with pytest.raises(TalkgenError) as err:
        service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"),
                          "width": 128, "height": 128}, progress=on_progress, cancel=cancel)
    assert err.value.code == "cancelled"
    assert_no_leftovers(work_root)


class _BadEngine:
    name = "bad"

    def __init__(self, settings, behaviour: str) -> None:  # type: ignore[no-untyped-def]
        self.behaviour, self.healthy = behaviour, True

    def generate(self, job) -> None:  # type: ignore[no-untyped-def]
        if self.behaviour == "short":
            job.writer.write(np.zeros((3, job.height, job.width, 3), np.uint8))
        elif self.behaviour == "crash":
            raise RuntimeError("kernel exploded")
        elif self.behaviour == "oom":
            raise MemoryError

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("behaviour", "code", "words"), [
    ("short", "engine_failed", "produced 3 frames, expected 50"),
    ("crash", "engine_failed", "RuntimeError: kernel exploded"),
    ("oom", "out_of_memory", "smaller size"),
])
def test_engine_failures_are_coded(service, media_dir: Path, work_root: Path, behaviour: str, code: str,
                                   words: str) -> None:
    built = []

    def factory(settings):  # type: ignore[no-untyped-def]
        built.append(_BadEngine(settings, behaviour))
        return built[-1]

    plugin = types.SimpleNamespace(register_engines=hookimpl(lambda register: register("bad", factory)))
    register_plugin(plugin, name="bad-engine")
    try:
        request = {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                   "width": 128, "height": 128, "engine": "bad"}
        for _ in range(2):
            with pytest.raises(TalkgenError) as err:
                service.generate(request)
            assert err.value.code == code and words in err.value.message
            assert_no_leftovers(work_root)
        # an engine that ran out of memory is rebuilt for the next job; others are reused
        assert len(built) == (2 if behaviour == "oom" else 1)
    finally:
        unregister_plugin("bad-engine")


def test_deadline_gives_a_timeout_error(service, media_dir: Path, work_root: Path) -> None:
    import time

    from tests.support.media_factory import make_wav

    make_wav(media_dir / "long.wav", seconds=8.0)
    service.settings = service.settings.model_copy(update={"job_timeout_s": 0.5})

    def slow(event) -> None:  # the engine reports per window; make each window take longer than the limit
        if event.stage == "generate":
            time.sleep(0.6)

    with pytest.raises(TalkgenError) as err:
        service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"),
                          "width": 128, "height": 128}, progress=slow)
    assert err.value.code == "timeout" and err.value.retryable and "TALKGEN_JOB_TIMEOUT_S" in err.value.message
    assert_no_leftovers(work_root)


def test_readme_documents_every_error_code() -> None:
    from talkgen.errors import ERROR_CODES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for code, cls in ERROR_CODES.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{code}` |")), None)
        assert row is not None, f"README lacks a row for {code}"
        assert ("| yes" in row) == cls.default_retryable or "/ no" in row, row


def test_top_level_generate_uses_environment_settings(media_dir: Path, work_root: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    import talkgen
    from talkgen import service as service_module

    monkeypatch.setenv("TALKGEN_ENGINE", "test-bars")
    monkeypatch.setenv("TALKGEN_ALLOWED_PATH_ROOTS", str(media_dir))
    monkeypatch.setenv("TALKGEN_WORK_DIR", str(work_root))
    monkeypatch.setattr(service_module, "_default_instance", None)
    result = talkgen.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                               "width": 128, "height": 128, "seed": 5})
    assert isinstance(result, talkgen.TalkResult) and result.engine == "test-bars" and result.seed == 5
    assert decode(result.save(tmp_path / "api.mp4")).count == 50
    with pytest.raises(talkgen.TalkgenError) as err:
        talkgen.generate({"image_path": str(media_dir / "face.png")})
    assert err.value.code == "missing_media"
    assert_no_leftovers(work_root)
