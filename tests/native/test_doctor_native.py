"""`talkgen doctor` on the tiny preset, its model-file checks, and the RunPod worker's warm-up."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env


def diagnose(models: Path, tmp_path: Path, verify: bool = False, **overrides: object) -> dict[str, object]:
    from talkgen.doctor.runner import diagnose as run

    settings = {"engine": "native", "native_device": "auto", "models_dir": models, "work_dir": tmp_path / "work",
                **overrides}
    return {c.name: c for c in run(verify=verify, overrides=settings).checks}


@pytest.fixture
def models_copy(tiny_models: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_models, tmp_path / "models"))


def test_tiny_models_can_serve_with_a_cpu_warning(tiny_models: Path, tmp_path: Path) -> None:
    import torch

    env = subprocess_env(TALKGEN_ENGINE="native", TALKGEN_NATIVE_DEVICE="auto", TALKGEN_MODELS_DIR=str(tiny_models),
                         TALKGEN_WORK_DIR=str(tmp_path / "work"))
    text = subprocess.run([sys.executable, "-m", "talkgen.cli", "doctor"], env=env, capture_output=True, text=True,
                          timeout=180)
    assert text.returncode == 0, text.stdout + text.stderr
    assert re.search(rf"^ok +models +tiny in {re.escape(str(tiny_models))}: every component present$", text.stdout,
                     re.M)
    assert "tiny test preset (random weights): no lock file to verify against" in text.stdout
    assert text.stdout.rstrip().endswith("this machine can serve")
    report = json.loads(subprocess.run([sys.executable, "-m", "talkgen.cli", "doctor", "--json"], env=env,
                                       capture_output=True, text=True, timeout=180).stdout)
    found = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True and report["errors"] == 0
    assert found["models"]["status"] == found["model files"]["status"] == "ok"
    if not torch.cuda.is_available():
        assert found["gpu"]["status"] == "warning"
        assert "no CUDA GPU: the native engine runs on the CPU, usable only for the tiny test preset" in \
            found["gpu"]["detail"]


def test_missing_preset_lora_is_an_error(models_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(models_copy / "loras")
    found = diagnose(models_copy, tmp_path)
    assert found["preset lora"].status == "error" and "fast preset's LoRA is missing" in found["preset lora"].detail
    assert "TALKGEN_NATIVE_PRESET" in found["preset lora"].fix
    assert "preset lora" not in diagnose(models_copy, tmp_path, native_preset="quality")  # quality has no LoRA


def test_a_real_set_is_checked_against_its_lock_file(models_copy: Path, tmp_path: Path) -> None:
    from talkgen.engines.native.weights.download import LOCK_FILE

    presets = models_copy / "talkgen-presets.json"
    presets.write_text(presets.read_text().replace('"name": "tiny"', '"name": "infinitetalk-480p"'))
    unlocked = diagnose(models_copy, tmp_path)["model files"]
    assert unlocked.status == "warning" and f"no {LOCK_FILE}" in unlocked.detail
    assert "talkgen models download infinitetalk-480p" in unlocked.fix
    (models_copy / LOCK_FILE).write_text("{}")
    locked = diagnose(models_copy, tmp_path)["model files"]  # the tiny files are not the real set's
    assert locked.status == "error" and "missing or damaged" in locked.detail and ": missing" in locked.detail
    assert locked.fix.startswith("talkgen models download infinitetalk-480p --dir ")
    rehashed = diagnose(models_copy, tmp_path, verify=True)["model files"]
    assert rehashed.status == "error" and "(full re-hash)" in rehashed.detail


def test_warmup_loads_the_engine_before_the_first_job(tiny_models: Path, tmp_path: Path, monkeypatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("runpod")
    import runpod

    from talkgen.runtimes import runpod as rp

    for name, value in {"ENGINE": "native", "WARMUP": "true", "MODELS_DIR": str(tiny_models),
                        "NATIVE_DEVICE": "cpu", "WORK_DIR": str(tmp_path / "work")}.items():
        monkeypatch.setenv(f"TALKGEN_{name}", value)
    started: list[list[str]] = []
    monkeypatch.setattr(runpod.serverless, "start", lambda config: started.append(sorted(rp.service()._engines)))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    rp.reset_service()
    try:
        with caplog.at_level(logging.INFO, logger="talkgen.runpod"):
            rp.main([])
    finally:
        rp.reset_service()
    assert started == [["native"]]  # built before the worker took any job
    assert re.search(r"warm-up: engine native loaded in [0-9.]+ s", caplog.text)


@pytest.mark.parametrize(("free_gib", "status"), [(80, "ok"), (0, "error")])
def test_gpu_lines_and_memory_plan_with_cuda_reported(tiny_models: Path, tmp_path: Path, monkeypatch,
                                                      free_gib: int, status: str) -> None:
    """This box has no GPU: torch's CUDA queries answer as a one-GPU machine would (the plan code is real)."""
    import torch

    from talkgen.doctor import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (free_gib << 30, 80 << 30))
    from talkgen.settings import Settings

    found = {c.name: c for c in gpu.checks(Settings(engine="native", models_dir=tiny_models, native_device="auto"))}
    assert found["cuda"].status == "ok" and "1 GPU(s)" in found["cuda"].detail
    assert found["gpu 0"].detail == f"Test GPU: {free_gib:.1f} of 80.0 GiB free"
    plan = found["memory plan (cuda:0)"]
    assert plan.status == status and plan.detail.startswith("832x480: ")
    if status == "ok":
        assert "offload=none" in plan.detail  # the tiny weights fit resident
    else:
        assert "nothing fits" in plan.detail and "TALKGEN_NATIVE_QUANT=fp8" in plan.fix
