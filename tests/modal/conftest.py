"""Fixtures for the Modal runtime: the app module imported offline, tiny native weights, small media."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

pytest.importorskip("modal")
# No process-wide OMP_NUM_THREADS here: set at collection it reached every later test's subprocesses, which then
# computed with another thread count than the pytest process and broke bit-equality checks (resume tests).
APP_FILE = REPO / "deploy" / "modal_app.py"
SIZE = 128


def load_app(name: str = "talkgen_modal_app_under_test") -> ModuleType:
    """Import deploy/modal_app.py as a fresh module (it reads TALKGEN_MODAL_* at import)."""
    spec = importlib.util.spec_from_file_location(name, APP_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


@pytest.fixture(autouse=True)
def _no_modal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults: no TALKGEN_MODAL_* from the shell."""
    for name in list(os.environ):
        if name.startswith("TALKGEN_MODAL_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from talkgen.engines.native.weights.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny-models"), seed=0)


@pytest.fixture(scope="session")
def modal_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.media_factory import make_image, make_wav

    d = tmp_path_factory.mktemp("modal-media")
    make_image(d / "face.png", 160, 128)
    make_wav(d / "short.wav", seconds=1.6, freq=330.0)  # 40 frames at 25 fps: one window
    return d


def tiny_request(media: Path, **fields):  # type: ignore[no-untyped-def]
    base = {"image_path": str(media / "face.png"), "wav_path": str(media / "short.wav"), "width": SIZE,
            "height": SIZE, "seed": 3}
    base.update(fields)
    return base


@pytest.fixture
def bar_settings(modal_media: Path, tmp_path: Path):
    """talkgen settings on the fast test engine (tests/support/bar_engine.py), outputs in a temp 'volume'."""
    from talkgen.settings import Settings

    volume = tmp_path / "outputs"
    volume.mkdir()
    return Settings(engine="test-bars", allowed_path_roots=[modal_media], work_dir=tmp_path / "work",
                    output_roots=[volume], volume_dir=volume, url_retries=0)
