"""Fixtures for the client: real media, the RunPod SDK's local API server running the talkgen worker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.support.runpod_local import local_api_server


@pytest.fixture(scope="module")
def client_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.media_factory import make_image, make_wav

    d = tmp_path_factory.mktemp("client-media")
    make_image(d / "face.png", 96, 64)
    make_wav(d / "speech.wav", seconds=2.0, freq=220.0)
    return d


def talk_request(media: Path, **extra: object) -> dict:
    """A 128x128 request the test engine renders in well under a second (50 frames)."""
    return {"image_path": str(media / "face.png"), "wav_path": str(media / "speech.wav"), "width": 128,
            "height": 128, **extra}


@pytest.fixture(scope="module")
def runpod_server(client_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m talkgen.runtimes.runpod --rp_serve_api`` on a free loopback port; its base URL."""
    pytest.importorskip("runpod")
    work = tmp_path_factory.mktemp("rp-work")
    log = tmp_path_factory.mktemp("rp-log") / "server.log"
    env = subprocess_env(TALKGEN_ENGINE="test-bars", TALKGEN_ALLOWED_PATH_ROOTS=str(client_media),
                         TALKGEN_WORK_DIR=str(work), UVICORN_LOG_LEVEL="warning")
    with local_api_server([sys.executable, "-m", "talkgen.runtimes.runpod"], env, log) as url:
        yield url
