"""Context parallelism under torchrun, on two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, subprocess_env
from tests.support.video_check import decode

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def test_split_dit_matches_one_process(tmp_path: Path):
    run = subprocess.run([*TORCHRUN, str(REPO / "tests" / "support" / "context_parallel_check.py"), str(tmp_path)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank-*.json"))]
    assert sorted(r["rank"] for r in rows) == [0, 1]
    for row in rows:
        assert row["scale"] > 0.1
        assert max(row["diffs"]) < 1e-5  # one speaker, and two speakers with label RoPE routing


def test_torchrun_cli_writes_one_video(tiny_models: Path, native_media: Path, tmp_path: Path):
    out = tmp_path / "cp.mp4"
    env = subprocess_env(TALKGEN_MODELS_DIR=str(tiny_models), TALKGEN_ALLOWED_PATH_ROOTS=str(native_media),
                         TALKGEN_WORK_DIR=str(tmp_path / "work"))
    run = subprocess.run([*TORCHRUN, "-m", "talkgen.cli", "generate", "--engine", "native", "--image",
                          str(native_media / "face.png"), "--audio", str(native_media / "short.wav"), "--width",
                          "128", "--height", "128", "--seed", "2", "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 reports; rank 1 only computes
    video = decode(out)
    assert (video.count, video.width, video.height) == (40, 128, 128)
    work = tmp_path / "work"
    assert [p.name for p in work.iterdir()] == ["talkgen-checkpoints"]  # job dirs removed
    assert not list((work / "talkgen-checkpoints").iterdir())  # rank 0 cleared its checkpoint
