"""Bad input through the whole service: the documented code, the field, and no files left behind."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from talkgen.errors import TalkgenError
from tests.conftest import assert_no_leftovers
from tests.support.media_factory import make_header_only_png
from tests.support.static_server import StaticServer


def _refused(service, request: dict, code: str, field: str | None, work_root: Path) -> TalkgenError:
    with pytest.raises(TalkgenError) as err:
        service.generate(request)
    assert err.value.code == code, err.value
    if field is not None:
        assert err.value.field == field
    assert_no_leftovers(work_root)
    return err.value


def test_private_url_refused_unless_allowed(service, media_dir: Path, work_root: Path) -> None:
    service.settings = service.settings.model_copy(update={"allow_private_urls": False})
    with StaticServer(media_dir) as srv:
        err = _refused(service, {"image_url": srv.url("face.png"), "wav_path": str(media_dir / "speech.wav")},
                       "forbidden_source", "image_url", work_root)
    assert "127.0.0.1" in err.message and "TALKGEN_ALLOW_PRIVATE_URLS" in err.message


def test_path_traversal_and_symlink_escape(service, media_dir: Path, tmp_path: Path, work_root: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes((media_dir / "speech.wav").read_bytes())
    traversal = str(media_dir / ".." / "secret.wav")
    _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": traversal},
             "forbidden_source", "wav_path", work_root)
    os.symlink(secret, media_dir / "link.wav")
    _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "link.wav")},
             "forbidden_source", "wav_path", work_root)


def test_oversize_base64(service, media_dir: Path, work_root: Path) -> None:
    service.settings = service.settings.model_copy(update={"max_base64_mb": 0.001})
    payload = base64.b64encode((media_dir / "speech.wav").read_bytes()).decode()
    err = _refused(service, {"image_path": str(media_dir / "face.png"), "wav_base64": payload},
                   "media_too_large", "wav_base64", work_root)
    assert "URL" in err.message


def test_mp3_given_as_image_base64(service, media_dir: Path, work_root: Path) -> None:
    payload = "data:image/png;base64," + base64.b64encode((media_dir / "speech.mp3").read_bytes()).decode()
    err = _refused(service, {"image_base64": payload, "wav_path": str(media_dir / "speech.wav")},
                   "unsupported_media", "image_base64", work_root)
    assert "audio" in err.message and "image" in err.message


def test_corrupt_wav(service, media_dir: Path, work_root: Path) -> None:
    corrupt = media_dir / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(corrupt)},
             "media_unreadable", "wav_path", work_root)


def test_decompression_bomb_png(service, media_dir: Path, work_root: Path) -> None:
    bomb = make_header_only_png(media_dir / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1000
    err = _refused(service, {"image_path": str(bomb), "wav_path": str(media_dir / "speech.wav")},
                   "media_too_large", "image_path", work_root)
    assert "pixels" in err.message


def test_too_long_audio(service, media_dir: Path, work_root: Path) -> None:
    service.settings = service.settings.model_copy(update={"max_duration_s": 1.0})
    err = _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")},
                   "too_long", "max_duration", work_root)
    assert "TALKGEN_MAX_DURATION_S" in err.message
    # ... and `max_duration` is the user's way out
    result = service.generate({"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                               "max_duration": 0.8, "width": 128, "height": 128})
    assert result.frames == 20 and abs(result.duration - 0.8) < 1e-9


def test_unknown_engine_fails_before_fetching(service, media_dir: Path, work_root: Path) -> None:
    err = _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
                             "engine": "nope"}, "invalid_request", "engine", work_root)
    assert "test-bars" in err.message


def test_speaker_boxes_outside_the_image(service, media_dir: Path, work_root: Path) -> None:
    err = _refused(service, {"person_count": "multi", "image_path": str(media_dir / "face.png"),
                             "wav_path": str(media_dir / "speech.wav"), "wav_path_2": str(media_dir / "speech2.wav"),
                             "speaker_boxes": [[0, 0, 40, 64], [40, 0, 500, 64]]},
                   "invalid_request", "speaker_boxes", work_root)
    assert "96x64" in err.message


def test_default_engine_missing_is_the_operators_problem(service, media_dir: Path, work_root: Path) -> None:
    service.default_engine = "native-not-installed"
    err = _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav")},
                   "engine_unavailable", None, work_root)
    assert "TALKGEN_ENGINE" in err.message and err.retryable is False


def test_job_deadline_covers_a_slow_download(service, media_dir: Path, work_root: Path) -> None:
    import time

    from tests.support.http_server import LoopbackServer, Reply

    service.settings = service.settings.model_copy(update={"job_timeout_s": 1.0})
    head = (media_dir / "speech.wav").read_bytes()[:2000]

    def trickle():  # a server that keeps sending, slowly: each chunk well within the read timeout
        for _ in range(40):
            time.sleep(0.3)
            yield head

    with LoopbackServer() as srv:
        srv.route("/slow.wav", Reply(body=trickle, content_length=False))
        start = time.monotonic()
        err = _refused(service, {"image_path": str(media_dir / "face.png"), "wav_url": srv.url("/slow.wav")},
                       "timeout", "wav_url", work_root)
    assert time.monotonic() - start < 3.0 and "TALKGEN_JOB_TIMEOUT_S" in err.message


def test_long_audio_is_not_decoded_past_the_cap(service, media_dir: Path, work_root: Path) -> None:
    from talkgen.media.audio_decode import decode_audio
    from tests.support.media_factory import make_wav

    long = make_wav(media_dir / "long.wav", seconds=30.0)
    assert len(decode_audio(long, 16000, max_seconds=2.0)) == 32000
    service.settings = service.settings.model_copy(update={"max_duration_s": 5.0})
    _refused(service, {"image_path": str(media_dir / "face.png"), "wav_path": str(long)},
             "too_long", "max_duration", work_root)
