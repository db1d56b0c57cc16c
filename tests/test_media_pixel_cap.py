"""Video frames obey the image pixel cap (TALKGEN_MAX_IMAGE_PIXELS), refused from the stream header."""

from __future__ import annotations

import pytest

from talkgen.errors import MediaTooLarge
from talkgen.media import probe
from talkgen.media.frames import VideoFrameReader
from talkgen.media.probe import probe_av
from tests.support import media_factory as mf


@pytest.fixture
def video(tmp_path):
    return mf.make_video(tmp_path / "v.mp4", seconds=0.4, width=96, height=64)


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args: object) -> None:
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(probe, "_first_frame", refuse)


def test_probe_refuses_larger_frames_before_decoding_one(video, no_decoding):
    with pytest.raises(MediaTooLarge) as exc:
        probe_av(video, field="video_url", max_pixels=96 * 64 - 1)
    error = exc.value
    assert error.field == "video_url" and "`video_url`" in error.message
    assert "96x64" in error.message and "TALKGEN_MAX_IMAGE_PIXELS" in error.message
    assert error.details == {"width": 96, "height": 64, "max_pixels": 96 * 64 - 1}


def test_the_frame_reader_refuses_larger_frames_before_decoding_one(video, no_decoding):
    with pytest.raises(MediaTooLarge) as exc:
        VideoFrameReader(video, 32, 32, "video_path", max_pixels=1000)
    assert exc.value.field == "video_path"


def test_frames_at_the_cap_pass(video):
    assert probe_av(video, field="video_url", max_pixels=96 * 64).width == 96
    with VideoFrameReader(video, 32, 32, "video_url", max_pixels=96 * 64) as reader:
        assert reader.frame_at(0).shape == (32, 32, 3)
    assert probe_av(video).height == 64  # no cap unless asked


def test_a_v2v_job_with_frames_over_the_cap_is_refused_by_the_service(settings, media_dir, work_root):
    """The service applies TALKGEN_MAX_IMAGE_PIXELS to the source video, as it does to images."""
    from talkgen.service import TalkGen
    from tests.conftest import assert_no_leftovers

    service = TalkGen(settings.model_copy(update={"max_image_pixels": 96 * 64 - 1}))
    with pytest.raises(MediaTooLarge) as exc:
        service.generate({"input_type": "video", "video_path": str(media_dir / "clip.mp4"),
                          "wav_path": str(media_dir / "speech.wav")})
    assert exc.value.field == "video_path"
    assert_no_leftovers(work_root)
