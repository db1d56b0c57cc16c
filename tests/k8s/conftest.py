"""Fixtures for the batch runner's tests: tiny native weights, small media, a moto S3 server.

Everything heavy is imported inside the fixtures, so the other Kubernetes tests (render, jobs API) run
without torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SIZE = 128


@pytest.fixture(scope="session")
def runner_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from talkgen.engines.native.weights.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("runner-models"), seed=0)


@pytest.fixture(scope="session")
def runner_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portrait, a short speech (40 frames, one window) and a long one (230 frames, three windows)."""
    from tests.support.media_factory import make_image, make_wav

    d = tmp_path_factory.mktemp("runner-media")
    make_image(d / "face.png", 160, 128)
    make_wav(d / "short.wav", seconds=1.6, freq=330.0, rate=44100)
    make_wav(d / "short_low.wav", seconds=1.6, freq=150.0)
    make_wav(d / "long.wav", seconds=9.2, freq=180.0)
    return d


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[Any]:
    pytest.importorskip("s3fs")
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        yield s3


@pytest.fixture
def runner_settings(runner_models: Path, runner_media: Path, moto_s3: Any, tmp_path: Path) -> Any:
    """Settings a pod would have: tiny weights, the media folder allowed, the S3 server's options."""
    from talkgen.settings import Settings

    work = tmp_path / "work"
    work.mkdir()
    return Settings(engine="native", models_dir=runner_models, allowed_path_roots=[runner_media], work_dir=work,
                    url_retries=0, storage_options={"s3": moto_s3.storage_options})


def tiny_request(media: Path, wav: str = "short.wav", **fields: Any) -> dict[str, Any]:
    base = {"image_path": str(media / "face.png"), "wav_path": str(media / wav), "width": SIZE, "height": SIZE,
            "seed": 3}
    return {**base, **fields}
