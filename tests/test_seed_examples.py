"""The seed template's README request examples run unchanged, end to end, through the test engine.

Only what cannot exist in a test is swapped: example.com URLs point at a loopback server holding real
media, the elided base64 payloads are real files, and /my_volume is a temporary directory.
"""

from __future__ import annotations

import base64
import copy
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_no_leftovers
from tests.support.static_server import StaticServer
from tests.support.video_check import decode

SEED_EXAMPLES = {
    "1_i2v_single": ({"input_type": "image", "person_count": "single",
                      "prompt": "A person is talking in a natural way.",
                      "image_url": "https://example.com/portrait.jpg", "wav_url": "https://example.com/audio.wav",
                      "width": 512, "height": 512}, "I2V_single"),
    "2_i2v_multi": ({"input_type": "image", "person_count": "multi", "prompt": "Two people having a conversation.",
                     "image_url": "https://example.com/portrait.jpg", "wav_url": "https://example.com/audio1.wav",
                     "wav_url_2": "https://example.com/audio2.wav", "width": 512, "height": 512}, "I2V_multi"),
    "3_v2v_single": ({"input_type": "video", "person_count": "single", "prompt": "A person singing a song.",
                      "video_url": "https://example.com/input_video.mp4", "wav_url": "https://example.com/audio.wav",
                      "width": 512, "height": 512}, "V2V_single"),
    "4_v2v_multi": ({"input_type": "video", "person_count": "multi", "prompt": "Two people talking in a video.",
                     "video_url": "https://example.com/input_video.mp4", "wav_url": "https://example.com/audio1.wav",
                     "wav_url_2": "https://example.com/audio2.wav", "width": 512, "height": 512}, "V2V_multi"),
    "5_base64": ({"input_type": "image", "person_count": "single", "prompt": "A person is talking in a natural way.",
                  "image_base64": "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD...",
                  "wav_base64": "data:audio/wav;base64,UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=",
                  "width": 512, "height": 512}, "I2V_single"),
    "6_local_paths": ({"input_type": "video", "person_count": "single",
                       "prompt": "A person is talking in a natural way.",
                       "video_path": "/my_volume/input_video.mp4", "wav_path": "/my_volume/audio.wav",
                       "width": 512, "height": 512}, "V2V_single"),
    "7_network_volume": ({"input_type": "image", "person_count": "single",
                          "prompt": "A person talking in a natural way.",
                          "image_url": "https://example.com/portrait.jpg", "wav_url": "https://example.com/audio.wav",
                          "width": 512, "height": 512, "network_volume": True}, "I2V_single"),
}


@pytest.fixture
def site(media_dir: Path, tmp_path: Path) -> Path:
    """The files the examples name, as real media."""
    d = tmp_path / "site"
    d.mkdir()
    shutil.copy(media_dir / "face.jpg", d / "portrait.jpg")
    shutil.copy(media_dir / "speech.wav", d / "audio.wav")
    shutil.copy(media_dir / "speech.wav", d / "audio1.wav")
    shutil.copy(media_dir / "speech2.wav", d / "audio2.wav")
    shutil.copy(media_dir / "clip.mp4", d / "input_video.mp4")
    return d


def _localise(request: dict, server: StaticServer, site: Path) -> dict:
    req = copy.deepcopy(request)
    for key, value in req.items():
        if isinstance(value, str) and value.startswith("https://example.com/"):
            req[key] = server.url(value.rsplit("/", 1)[1])
        elif isinstance(value, str) and value.startswith("/my_volume/"):
            req[key] = str(site / value.rsplit("/", 1)[1])
    if "image_base64" in req:  # the README elides the payloads; send the same kinds of file in full
        payloads = (("image_base64", "image/jpeg", "portrait.jpg"), ("wav_base64", "audio/wav", "audio.wav"))
        for field, mime, name in payloads:
            req[field] = f"data:{mime};base64," + base64.b64encode((site / name).read_bytes()).decode()
    return req


@pytest.mark.parametrize("name", list(SEED_EXAMPLES))
def test_seed_request_validates_to_its_mode(name: str) -> None:
    from talkgen.request import TalkRequest

    request, mode = SEED_EXAMPLES[name]
    assert TalkRequest.parse(request).mode.value == mode


@pytest.mark.parametrize("name", list(SEED_EXAMPLES))
def test_seed_request_runs_end_to_end(name: str, site: Path, settings, work_root: Path, tmp_path: Path) -> None:
    from talkgen.service import TalkGen

    request, mode = SEED_EXAMPLES[name]
    settings = settings.model_copy(update={"allowed_path_roots": [site]})
    settings.volume_dir.mkdir(exist_ok=True)
    with StaticServer(site) as server:
        result = TalkGen(settings).generate(_localise(request, server, site))
    assert result.mode == mode
    expected_seconds = 2.0  # speech.wav; in multi 'para' mode the longer of 2.0 s and 1.2 s
    if request.get("network_volume"):
        assert result.video is None and result.video_path
        path = Path(result.video_path)
        assert path.parent == settings.volume_dir and path.name == f"talkgen_{result.job_id}.mp4"
    else:
        assert result.video.startswith("data:video/mp4;base64,")
        path = result.save(tmp_path / "out.mp4")
    video = decode(path)
    assert video.count == round(25 * expected_seconds) == result.frames
    assert video.fps == 25
    assert (video.width, video.height) == (512, 512)
    assert video.audio_codec == "aac"
    assert abs(video.audio_duration - video.video_duration) < 0.05
    assert_no_leftovers(work_root)
