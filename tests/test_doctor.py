"""`talkgen doctor` as a user runs it, and the RunPod worker's warm-up failing fast."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"TALKGEN_ENGINE": "native", "TALKGEN_NATIVE_DEVICE": "auto"}
    return subprocess.run([sys.executable, "-m", "talkgen.cli", "doctor", *args], env=subprocess_env(**{**base, **env}),
                          capture_output=True, text=True, timeout=180)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    report = json.loads(result.stdout)
    assert set(report) == {"ok", "errors", "warnings", "checks"}
    assert report["ok"] is (result.returncode == 0)
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"} and check["status"] in {"ok", "warning", "error"}
        assert check["status"] == "ok" or check["fix"], check  # every warning and error says what to do
    return {c["name"]: c for c in report["checks"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_empty_models_dir_is_an_error_naming_the_parts_and_the_download(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    text = doctor(TALKGEN_MODELS_DIR=str(tmp_path / "models"), TALKGEN_WORK_DIR=str(tmp_path / "work"))
    assert text.returncode == 1 and "Traceback" not in text.stdout + text.stderr
    assert re.search(r"^error +models +infinitetalk-480p in ", text.stdout, re.M)
    assert "missing transformer, vae, text encoder" in text.stdout
    assert f"fix: talkgen models download infinitetalk-480p --dir {tmp_path / 'models'}" in text.stdout
    assert text.stdout.rstrip().endswith("this machine cannot serve until the errors are fixed")
    found = checks(doctor("--json", TALKGEN_MODELS_DIR=str(tmp_path / "models"),
                          TALKGEN_WORK_DIR=str(tmp_path / "work")))
    assert found["models"]["status"] == "error" and "single-speaker adapter" in found["models"]["detail"]
    assert "talkgen models download" in found["models"]["fix"]
    assert found["work dir"]["status"] == "ok" and found["python"]["status"] == "ok"


def test_unwritable_work_dir_is_an_error(tmp_path: Path) -> None:
    found = checks(doctor("--json", TALKGEN_MODELS_DIR=str(tmp_path), TALKGEN_WORK_DIR="/proc/talkgen-doctor"))
    assert found["work dir"]["status"] == "error" and "/proc/talkgen-doctor is not writable" in \
        found["work dir"]["detail"]
    assert "TALKGEN_WORK_DIR" in found["work dir"]["fix"]
    (tmp_path / "a-file").write_text("x")  # a work dir under a file: the setting itself is refused
    bad = doctor("--json", TALKGEN_MODELS_DIR=str(tmp_path), TALKGEN_WORK_DIR=str(tmp_path / "a-file" / "work"))
    found = checks(bad)
    assert bad.returncode == 1 and found["setting work_dir"]["status"] == "error"
    assert "is a file" in found["setting work_dir"]["detail"] and "work dir" in found  # the rest still ran


def test_cuda_demanded_on_a_cpu_machine_is_an_error(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = doctor("--json", TALKGEN_MODELS_DIR=str(tmp_path), TALKGEN_WORK_DIR=str(tmp_path / "w"),
                    TALKGEN_NATIVE_DEVICE="cuda")
    gpu = checks(result)["gpu"]
    assert result.returncode == 1 and gpu["status"] == "error"
    assert "TALKGEN_NATIVE_DEVICE=cuda but no CUDA GPU" in gpu["detail"] and "TALKGEN_NATIVE_DEVICE=auto" in gpu["fix"]


def test_comfyui_with_nothing_listening_is_an_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = doctor(TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=url, TALKGEN_WORK_DIR=str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert re.search(rf"^error +comfyui +no ComfyUI server answers at {url} ", result.stdout, re.M), result.stdout
    assert "fix: start ComfyUI there" in result.stdout and "TALKGEN_COMFYUI_DIR" in result.stdout
    (tmp_path / "ComfyUI").mkdir()
    (tmp_path / "ComfyUI" / "main.py").write_text("")
    supervised = doctor("--json", TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=url, TALKGEN_WORK_DIR=str(tmp_path),
                        TALKGEN_COMFYUI_DIR=str(tmp_path / "ComfyUI"))
    found = checks(supervised)  # talkgen will start it: not an error
    assert supervised.returncode == 0 and found["comfyui"]["status"] == "warning"
    assert "talkgen starts it from" in found["comfyui"]["detail"]


def test_comfyui_fake_server_with_the_flavours_nodes_and_models_is_ok(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    from tests.comfyui.test_engine import MODELS, SCHEMA
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(SCHEMA, models=MODELS) as server:
        result = doctor("--json", TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=server.url,
                        TALKGEN_WORK_DIR=str(tmp_path))
    found = checks(result)
    assert result.returncode == 0, result.stdout
    assert found["comfyui"]["status"] == "ok" and "ComfyUI 0.33.0" in found["comfyui"]["detail"]
    assert found["comfyui nodes"]["status"] == found["comfyui models"]["status"] == "ok"
    assert "models" not in found  # the native engine's files are not this engine's concern
    # auto (the default) on a server without the wrapper packs: the seed's 'para' requests will be refused
    assert found["comfyui flavours"]["status"] == "warning" and "'para'" in found["comfyui flavours"]["detail"]
    assert "WanVideoSampler" in found["comfyui flavours"]["detail"]
    with FakeComfyUI(SCHEMA, models={**MODELS, "vae": []}) as server:
        found = checks(doctor("--json", TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=server.url,
                              TALKGEN_WORK_DIR=str(tmp_path)))
    assert found["comfyui models"]["status"] == "error"
    assert "vae/Wan2_1_VAE_bf16.safetensors" in found["comfyui models"]["detail"]


def test_comfyui_auto_reports_each_flavour_and_what_runs_where(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    from tests.comfyui.test_flavour_choice import BOTH_MODELS, BOTH_SCHEMA
    from tests.support.fake_comfyui import FakeComfyUI

    with FakeComfyUI(BOTH_SCHEMA, models=BOTH_MODELS) as server:
        found = checks(doctor("--json", TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=server.url,
                              TALKGEN_WORK_DIR=str(tmp_path)))
        assert {found[f"comfyui {c} ({f})"]["status"] for c in ("nodes", "models") for f in ("native", "wrapper")} \
            == {"ok"}
        assert found["comfyui flavours"]["detail"] == "auto runs the native flavour, and the wrapper flavour for 'para'"
        wrapper_only = checks(doctor("--json", TALKGEN_ENGINE="comfyui", TALKGEN_COMFYUI_URL=server.url,
                                     TALKGEN_COMFYUI_FLAVOUR="wrapper", TALKGEN_WORK_DIR=str(tmp_path)))
        assert wrapper_only["comfyui nodes"]["detail"].endswith("of the wrapper flavour present")
        assert "comfyui flavours" not in wrapper_only  # explicit: no choice to report


def test_a_crashing_check_is_one_error_line_naming_it() -> None:
    from talkgen.doctor.result import guarded

    def broken():  # type: ignore[no-untyped-def]
        raise KeyError("boom")

    [line] = guarded("gpu", broken)
    assert line.name == "gpu" and line.status == "error" and "KeyError" in line.detail and line.fix


def test_warmup_failure_stops_the_worker_with_the_coded_message(tmp_path: Path) -> None:
    pytest.importorskip("runpod")
    (tmp_path / "models").mkdir()
    env = subprocess_env(TALKGEN_ENGINE="native", TALKGEN_WARMUP="true", TALKGEN_MODELS_DIR=str(tmp_path / "models"),
                         TALKGEN_WORK_DIR=str(tmp_path / "work"))
    result = subprocess.run([sys.executable, "-m", "talkgen.runtimes.runpod"], env=env, capture_output=True,
                            text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "warm-up failed, stopping the worker: engine_unavailable: The native engine's weights are missing" in output
    assert "Traceback" not in output


def test_doctor_runs_without_torch(tmp_path: Path) -> None:
    blocker = tmp_path / "block" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named torch (blocked by the test)')\n")
    env = subprocess_env(TALKGEN_ENGINE="native", TALKGEN_MODELS_DIR=str(tmp_path), TALKGEN_WORK_DIR=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), env["PYTHONPATH"]])
    result = subprocess.run([sys.executable, "-m", "talkgen.cli", "doctor", "--json"], env=env, capture_output=True,
                            text=True, timeout=120)
    found = checks(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert found["torch"]["status"] == "error" and "blocked by the test" in found["torch"]["detail"]
    assert "talkgen[native]" in found["torch"]["fix"] and found["work dir"]["status"] == "ok"
    env["TALKGEN_ENGINE"] = "comfyui"
    found = checks(subprocess.run([sys.executable, "-m", "talkgen.cli", "doctor", "--json"], env=env,
                                  capture_output=True, text=True, timeout=120))
    assert found["torch"]["status"] == "ok"  # the ComfyUI engine does not need it here


def test_bad_settings_are_errors_and_the_other_checks_still_run(tmp_path: Path) -> None:
    result = doctor("--json", TALKGEN_MODELS_DIR=str(tmp_path), TALKGEN_WORK_DIR=str(tmp_path),
                    TALKGEN_STORAGE_OPTIONS="{not json", TALKGEN_NATIVE_OFFLOAD="bogus")
    found = checks(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert found["setting storage_options"]["status"] == found["setting native_offload"]["status"] == "error"
    assert "'auto', 'none', 'model' or 'group'" in found["setting native_offload"]["detail"]
    assert "gpu" in found and "work dir" in found and "settings" not in found


def test_an_unwritable_network_volume_is_a_warning_not_an_error(tmp_path):
    """The weights on a volume only need reading: only `network_volume: true` requests need it writable."""
    from talkgen.doctor.storage import checks
    from talkgen.settings import Settings

    assert not [c for c in checks(Settings(volume_dir=tmp_path / "absent")) if c.name == "network volume"]
    found = [c for c in checks(Settings(volume_dir=Path("/proc/self"))) if c.name == "network volume"]
    assert found[0].status == "warning" and "network_volume: true" in found[0].detail and found[0].fix


def test_vocal_separator_check_finds_missing_and_truncated_files(tmp_path: Path) -> None:
    pytest.importorskip("bs_roformer")
    from talkgen.doctor.separation import checks as separator_checks
    from talkgen.engines.native.weights.tiny_separator import write_tiny_separator
    from talkgen.separation.config import SEPARATOR_FILE
    from talkgen.settings import Settings

    settings = Settings(models_dir=tmp_path, separation_model=None, work_dir=tmp_path / "work")
    [missing] = separator_checks(settings)
    assert missing.status == "warning" and SEPARATOR_FILE in missing.detail and "separate_vocals" in missing.fix
    path = write_tiny_separator(tmp_path / SEPARATOR_FILE, seed=0)
    [found] = separator_checks(settings)
    assert found.status == "ok" and str(path) in found.detail
    path.write_bytes(path.read_bytes()[:-100])
    [broken] = separator_checks(settings)
    assert broken.status == "error" and "truncated" in broken.detail and "delete it" in broken.fix
