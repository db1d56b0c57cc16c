"""The RunPod Hub files (.runpod/) and the native image's inputs agree with talkgen itself.

The image test (tests/images/image_test.sh, `make image-test`) builds the image and runs the request of
.runpod/tests.json in it; these checks need no container tools.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from talkgen.cli import main as cli
from talkgen.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
RUNPOD = ROOT / ".runpod"
DOCKERFILE = ROOT / "deploy" / "native.Dockerfile"
ENTRYPOINT_ONLY = {"TALKGEN_DOCTOR", "TALKGEN_DOCTOR_ARGS"}  # read by deploy/entrypoint.sh, not Settings


def _hub() -> dict:
    return json.loads((RUNPOD / "hub.json").read_text())


def _tests() -> dict:
    return json.loads((RUNPOD / "tests.json").read_text())


def test_hub_json_has_what_the_hub_reads():
    hub = _hub()
    assert hub["title"] and hub["description"]
    assert hub["type"] == "serverless" and hub["category"] == "video"
    config = hub["config"]
    assert config["runsOn"] == "GPU" and config["gpuCount"] == 1
    assert config["containerDiskInGb"] >= 20
    assert all(re.fullmatch(r"[A-Z]+_\d+(_PRO)?", gpu) for gpu in config["gpuIds"].split(","))
    assert config["allowedCudaVersions"] and all(re.fullmatch(r"\d+\.\d", v) for v in config["allowedCudaVersions"])
    keys = [item["key"] for item in config["env"]]
    assert len(keys) == len(set(keys))
    for name in ("TALKGEN_MODELS_DIR", "TALKGEN_NATIVE_PRESET", "TALKGEN_NATIVE_QUANT", "TALKGEN_NATIVE_OFFLOAD",
                 "TALKGEN_WARMUP"):
        assert name in keys
    for item in config["env"]:
        field = item["input"]
        assert field["name"] and field["description"] and field["type"] in {"string", "number", "boolean"}
        for option in field.get("options", []):
            assert set(option) == {"label", "value"}
        if "options" in field and "default" in field:
            assert field["default"] in [o["value"] for o in field["options"]]


def _env_values(item: dict) -> list:
    field = item["input"]
    values = [o["value"] for o in field.get("options", [])]
    if "default" in field:
        values.append(field["default"])
    return values


@pytest.mark.parametrize("item", [i for i in _hub()["config"]["env"] if i["key"].startswith("TALKGEN_")],
                         ids=lambda i: i["key"])
def test_hub_env_settings_are_talkgen_settings_and_their_values_load(item, monkeypatch):
    key = item["key"]
    if key in ENTRYPOINT_ONLY:
        assert key in (ROOT / "deploy" / "entrypoint.sh").read_text()
        return
    field = key.removeprefix("TALKGEN_").lower()
    assert field in Settings.model_fields, f"{key} is not a talkgen setting"
    for value in _env_values(item):
        monkeypatch.setenv(key, str(value).lower() if isinstance(value, bool) else str(value))
        loaded = getattr(load_settings(), field)
        if isinstance(value, str) and field != "models_dir":
            assert loaded == value


def test_hub_presets_use_valid_values(monkeypatch):
    for preset in _hub()["config"].get("presets", []):
        for key, value in preset["defaults"].items():
            monkeypatch.setenv(key, value)
        load_settings()  # raises InvalidConfig on a bad value


def test_tests_json_request_validates_with_talkgen_validate(tmp_path, monkeypatch):
    tests = _tests()
    assert tests["tests"], "the Hub needs at least one test"
    monkeypatch.chdir(ROOT)  # the image's working directory holds examples/ like the repository root
    for test in tests["tests"]:
        assert test["name"] and 0 < test["timeout"] <= 3_600_000  # milliseconds
        request = tmp_path / f"{test['name']}.json"
        request.write_text(json.dumps({"input": test["input"]}))
        result = CliRunner().invoke(cli, ["validate", str(request)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output


def test_tests_json_runs_on_the_tiny_weights_the_image_ships():
    config = _tests()["config"]
    env = {item["key"]: item["value"] for item in config["env"]}
    tiny = env["TALKGEN_MODELS_DIR"]
    assert f"talkgen models tiny {tiny}" in DOCKERFILE.read_text()
    assert config["allowedCudaVersions"] == _hub()["config"]["allowedCudaVersions"]
    assert config["gpuCount"] == 1 and config["gpuTypeId"].startswith("NVIDIA ")


def test_hub_dockerfile_is_the_native_dockerfile():
    # One Dockerfile: .runpod/Dockerfile is a byte copy (not a symlink, see deploy/README.md).
    copy = RUNPOD / "Dockerfile"
    assert not copy.is_symlink()
    assert copy.read_bytes() == DOCKERFILE.read_bytes(), "run: cp deploy/native.Dockerfile .runpod/Dockerfile"


def test_hub_handler_only_starts_the_talkgen_worker():
    tree = ast.parse((RUNPOD / "handler.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in imports] == ["talkgen.runtimes.runpod"]


def test_image_requirements_pin_every_dependency_of_the_image_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    extras, seen = ["native", "runpod", "s3"], set()
    while extras:  # an extra may name others (native includes talkgen[separation])
        extra = extras.pop()
        seen.add(extra)
        for req in map(Requirement, project["optional-dependencies"][extra]):
            if req.name == "talkgen":
                extras += sorted(req.extras - seen)
            else:
                wanted.append(req)
    pins = {}
    for line in (ROOT / "deploy" / "native-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name == "torch":  # installed first, from TORCH_SPEC
            assert "ARG TORCH_SPEC=torch==" in DOCKERFILE.read_text()
            continue
        assert name in pins, f"{req.name} is not pinned in deploy/native-requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} vs pinned {pins[name]}"
