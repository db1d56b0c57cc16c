"""ModalSettings: what `TALKGEN_MODAL_*` accepts, what it refuses and how it maps to ``app.cls``."""

from __future__ import annotations

import pytest

from talkgen.errors import InvalidConfig
from talkgen.modal.settings import ModalSettings, load_modal_settings


def test_defaults_map_to_cls_options():
    options = load_modal_settings().cls_options()
    assert options["gpu"] == "H100"
    assert (options["timeout"], options["startup_timeout"], options["scaledown_window"]) == (3600, 1200, 300)
    assert options["min_containers"] == 0 and "max_containers" not in options
    env = options["env"]
    assert env["TALKGEN_MODELS_DIR"] == "/models" and env["TALKGEN_VOLUME_DIR"] == "/outputs"
    assert env["TALKGEN_WARMUP"] == "true" and env["TALKGEN_JOB_TIMEOUT_S"] == "3570"
    assert env["TALKGEN_MODAL_GPU"] == '["H100"]'


@pytest.mark.parametrize(("raw", "expected"), [
    ("h100", "H100"),
    ("a100-80gb:4", "A100-80GB:4"),
    ("H100!", "H100!"),
    ("b200+:8", "B200+:8"),
    ("A10:4", "A10:4"),
    ("H100,A100-80GB", ["H100", "A100-80GB"]),
    (' ["L40S", "a100"] ', ["L40S", "A100"]),
    ("H100:2, H200:2", ["H100:2", "H200:2"]),
])
def test_gpu_forms(monkeypatch: pytest.MonkeyPatch, raw: str, expected):
    monkeypatch.setenv("TALKGEN_MODAL_GPU", raw)
    assert load_modal_settings().cls_options()["gpu"] == expected


@pytest.mark.parametrize(("raw", "words"), [
    ("FOO", ["TALKGEN_MODAL_GPU", "'FOO' is not a Modal GPU type", "H100"]),
    ("H100:0", ["TALKGEN_MODAL_GPU", "1 to 8 H100"]),
    ("H100:9", ["1 to 8 H100"]),
    ("A10:8", ["1 to 4 A10"]),
    ("H100:two", ["whole number"]),
    ("", ["at least one GPU"]),
    ("H100:2,A100:4", ["same count"]),
])
def test_bad_gpu(monkeypatch: pytest.MonkeyPatch, raw: str, words: list[str]):
    monkeypatch.setenv("TALKGEN_MODAL_GPU", raw)
    with pytest.raises(InvalidConfig) as info:
        load_modal_settings()
    for word in words:
        assert word in info.value.message


@pytest.mark.parametrize(("name", "value", "words"), [
    ("TIMEOUT_S", "0", ["TALKGEN_MODAL_TIMEOUT_S", "greater than or equal to 1"]),
    ("TIMEOUT_S", "100000", ["TALKGEN_MODAL_TIMEOUT_S", "less than or equal to 86400"]),
    ("SCALEDOWN_WINDOW_S", "1", ["TALKGEN_MODAL_SCALEDOWN_WINDOW_S"]),
    ("SCALEDOWN_WINDOW_S", "3601", ["TALKGEN_MODAL_SCALEDOWN_WINDOW_S"]),
    ("MAX_CONTAINERS", "0", ["TALKGEN_MODAL_MAX_CONTAINERS"]),
    ("APP_NAME", "my app", ["TALKGEN_MODAL_APP_NAME", "not a valid Modal name"]),
    ("WEIGHTS_VOLUME", "", ["TALKGEN_MODAL_WEIGHTS_VOLUME"]),
    ("ENV", '{"TALKGEN_MODAL_GPU": "T4"}', ["TALKGEN_MODAL_ENV", "deploy setting"]),
    ("ENV", "not json", ["TALKGEN_MODAL_*"]),
    ("PYTHON_VERSION", "python3", ["TALKGEN_MODAL_PYTHON_VERSION"]),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: list[str]):
    monkeypatch.setenv(f"TALKGEN_MODAL_{name}", value)
    with pytest.raises(InvalidConfig) as info:
        load_modal_settings()
    assert info.value.code == "invalid_config"
    for word in words:
        assert word in info.value.message


def test_min_above_max_containers():
    with pytest.raises(InvalidConfig, match=r"min_containers \(3\) is above max_containers \(2\)"):
        load_modal_settings(min_containers=3, max_containers=2)


def test_env_secrets_and_round_trip(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TALKGEN_MODAL_SECRETS", "aws, hf")
    monkeypatch.setenv("TALKGEN_MODAL_ENV", '{"TALKGEN_NATIVE_QUANT": "fp8", "TALKGEN_WARMUP": "false"}')
    monkeypatch.setenv("TALKGEN_MODAL_MAX_CONTAINERS", "8")
    monkeypatch.setenv("TALKGEN_MODAL_GPU", "H100:2")
    settings = load_modal_settings()
    assert settings.secrets == ["aws", "hf"] and settings.gpu_count == 2
    options = settings.cls_options()
    assert options["max_containers"] == 8 and options["gpu"] == "H100:2"
    assert options["env"]["TALKGEN_NATIVE_QUANT"] == "fp8" and options["env"]["TALKGEN_WARMUP"] == "false"
    # a container re-reads the same settings from the variables it is given
    for name in ("TALKGEN_MODAL_SECRETS", "TALKGEN_MODAL_ENV", "TALKGEN_MODAL_MAX_CONTAINERS", "TALKGEN_MODAL_GPU"):
        monkeypatch.delenv(name)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert ModalSettings() == settings
