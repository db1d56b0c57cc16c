"""TALKGEN_* configuration: list parsing, safe defaults, and malformed values as a coded error."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkgen.errors import TalkgenError
from talkgen.settings import EXAMPLES_DIR, load_settings


def test_path_lists_from_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALKGEN_ALLOWED_PATH_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("TALKGEN_OUTPUT_ROOTS", f'["{tmp_path}/out"]')
    monkeypatch.setenv("TALKGEN_STORAGE_OPTIONS", '{"s3": {"anon": true}}')
    settings = load_settings()
    assert settings.allowed_path_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.output_roots == [tmp_path / "out"]
    assert settings.storage_options_for("s3") == {"anon": True} and settings.storage_options_for("gs") == {}


def test_working_directory_root_is_never_a_default_path_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir("/")
    assert Path("/") not in load_settings().allowed_path_roots
    monkeypatch.chdir(tmp_path)
    assert load_settings().allowed_path_roots[:2] == [EXAMPLES_DIR, tmp_path]


@pytest.mark.parametrize(("name", "value"), [("TALKGEN_INLINE_OUTPUT_LIMIT_MB", "-1"),
                                             ("TALKGEN_STORAGE_OPTIONS", "{not json"),
                                             ("TALKGEN_URL_RETRIES", "many")])
def test_malformed_settings_are_a_clear_error(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(TalkgenError) as err:
        load_settings()
    assert err.value.code == "invalid_config"
    assert name.removeprefix("TALKGEN_").lower() in err.value.message
