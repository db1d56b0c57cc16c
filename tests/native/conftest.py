"""Fixtures for the native engine: tiny weights written once per session, media, a warm service."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

SIZE = 128


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from talkgen.engines.native.weights.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny-models"), seed=0)


@pytest.fixture(scope="session")
def native_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portrait, speech of a few lengths and pitches, a 30 fps source video."""
    from tests.support.media_factory import make_image, make_video, make_wav

    d = tmp_path_factory.mktemp("native-media")
    make_image(d / "face.png", 160, 128)
    make_wav(d / "speech.wav", seconds=3.4, freq=220.0)  # 85 frames: two windows
    make_wav(d / "speech_low.wav", seconds=3.4, freq=110.0, envelope_hz=5.0)  # same length, other content
    make_wav(d / "short.wav", seconds=1.6, freq=330.0, rate=44100)
    make_wav(d / "long.wav", seconds=9.2, freq=180.0)  # 230 frames: three windows
    make_video(d / "clip30.mp4", seconds=3.0, fps=30, width=160, height=128)
    return d


@pytest.fixture(scope="session")
def native_settings(tiny_models: Path, native_media: Path, tmp_path_factory: pytest.TempPathFactory):
    from talkgen.settings import Settings

    return Settings(engine="native", models_dir=tiny_models, allowed_path_roots=[native_media],
                    work_dir=tmp_path_factory.mktemp("native-work"), url_retries=0)


@pytest.fixture(scope="session")
def native_service(native_settings):
    from talkgen.service import TalkGen

    service = TalkGen(native_settings)
    yield service
    service.close()


def request(media: Path, **fields):  # type: ignore[no-untyped-def]
    """A 128x128 request on the session media with a fixed seed."""
    base = {"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"), "width": SIZE,
            "height": SIZE, "seed": 3}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="session")
def tiny_fp8_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny preset (same seed as `tiny_models`) with fp8 ``_scaled`` adapters and DiT file: (root, DiT file)."""
    from talkgen.engines.native.weights.tiny_fp8 import write_tiny_fp8

    root = tmp_path_factory.mktemp("tiny-fp8-models")
    return root, write_tiny_fp8(root, seed=0)
