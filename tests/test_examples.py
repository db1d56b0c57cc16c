"""The bundled example requests run as documented, from the repository root, with paths as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_no_leftovers, subprocess_env
from tests.support.video_check import decode

REQUESTS = sorted((REPO / "examples" / "requests").glob("*.json"))


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.stem)
def test_example_request_runs_from_the_repo_root(request_file: Path, tmp_path: Path, work_root: Path) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "talkgen.cli", "generate", "--request", str(request_file), "-o", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=subprocess_env(TALKGEN_ENGINE="test-bars", TALKGEN_WORK_DIR=str(work_root)),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    request = json.loads(request_file.read_text())["input"]
    video = decode(out)
    assert video.count == result["frames"] and video.fps == 25
    assert (video.width, video.height) == (result["width"], result["height"])
    if "width" in request:
        assert (video.width, video.height) == (request["width"], request["height"])
    assert abs(video.audio_duration - video.video_duration) < 0.05
    assert_no_leftovers(work_root)
