"""Shared fixtures: a clean environment, the test engine plugin, real media, settings for loopback peers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN_SITE = REPO / "tests" / "support" / "plugin_site"

# The RunPod SDK probes the internet unless told not to; every test and subprocess inherits this.
os.environ["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] = "true"
# The test engine is a real installed plugin: its dist-info on sys.path registers the entry point.
if str(PLUGIN_SITE) not in sys.path:
    sys.path.insert(0, str(PLUGIN_SITE))


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for talkgen subprocesses: same plugins, no internet probes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(PLUGIN_SITE), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="session", autouse=True)
def _tiny_separator(tmp_path_factory: pytest.TempPathFactory):
    """Requests separate vocals by default: every job of the session (and its subprocesses) uses the tiny
    preset's separator (random weights that pass speech through, slightly changed) through
    TALKGEN_SEPARATION_MODEL, unless the shell names one. Without torch/bs-roformer nothing is set, and
    jobs that separate fail with `engine_unavailable`."""
    import importlib.util

    if os.environ.get("TALKGEN_SEPARATION_MODEL") or importlib.util.find_spec("bs_roformer") is None:
        yield None
        return
    from talkgen.engines.native.weights.tiny_separator import write_tiny_separator
    from talkgen.separation.config import SEPARATOR_FILE

    path = write_tiny_separator(tmp_path_factory.mktemp("tiny-separator") / SEPARATOR_FILE, seed=0)
    os.environ["TALKGEN_SEPARATION_MODEL"] = str(path)
    yield path
    os.environ.pop("TALKGEN_SEPARATION_MODEL", None)


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Each test sees built-ins plus installed plugins, freshly loaded."""
    from talkgen.plugins import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """Real small media: a portrait, two speeches of different lengths, a 30 fps video, an mp3."""
    from tests.support.media_factory import make_audio, make_image, make_video, make_wav

    d = tmp_path / "media"
    d.mkdir()
    make_image(d / "face.png", 96, 64)
    make_image(d / "face.jpg", 96, 64)
    make_wav(d / "speech.wav", seconds=2.0, freq=220.0)
    make_wav(d / "speech2.wav", seconds=1.2, freq=330.0, rate=44100)
    make_audio(d / "speech.mp3", seconds=1.6)
    make_video(d / "clip.mp4", seconds=2.0, fps=30, width=96, height=64)
    return d


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def settings(media_dir: Path, work_root: Path, tmp_path: Path):
    from talkgen.settings import Settings

    return Settings(
        engine="test-bars",
        allowed_path_roots=[media_dir],
        allow_private_urls=True,
        work_dir=work_root,
        output_roots=[tmp_path / "outputs"],
        volume_dir=tmp_path / "volume",
        url_retries=0,
    )


@pytest.fixture
def service(settings):
    from talkgen.service import TalkGen

    tg = TalkGen(settings)
    yield tg
    tg.close()


def assert_no_leftovers(work_root: Path) -> None:
    """Every job removes its work directory, success or failure."""
    assert list(work_root.iterdir()) == []
