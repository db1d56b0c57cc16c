"""TALKGEN_* configuration: list parsing, safe defaults, and malformed values as a coded error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from talkgen.errors import TalkgenError
from talkgen.settings import EXAMPLES_DIR, Settings, load_settings


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


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("TALKGEN_CHECKPOINT_URL", "nosuchproto://bucket/ckpt/", "not a storage protocol"),
    ("TALKGEN_CHECKPOINT_URL", "simplecache::nosuchproto://b/", "not a storage protocol"),
    ("TALKGEN_OUTPUT_URL", "gs://bucket/out/", "driver is not installed"),
    ("TALKGEN_WORK_DIR", "{file}/work", "is a file"),
])
def test_storage_urls_and_work_dir_are_checked_when_settings_load(monkeypatch, tmp_path: Path, name: str,
                                                                  value: str, expected: str) -> None:
    if "gs://" in value and importlib.util.find_spec("gcsfs"):
        pytest.skip("gcsfs is installed here")
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(name, value.format(file=tmp_path / "file"))
    with pytest.raises(TalkgenError) as err:
        load_settings()
    assert err.value.code == "invalid_config" and err.value.retryable is False
    assert name in err.value.message and expected in err.value.message


def test_storage_url_protocols_are_lower_cased_and_local_paths_kept(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TALKGEN_CHECKPOINT_URL", "MEMORY://ckpt/")
    monkeypatch.setenv("TALKGEN_OUTPUT_URL", str(tmp_path / "out"))
    monkeypatch.setenv("TALKGEN_WORK_DIR", str(tmp_path / "not" / "yet"))
    settings = load_settings()
    assert settings.checkpoint_url == "memory://ckpt/" and settings.output_url == str(tmp_path / "out")
    assert settings.work_dir == tmp_path / "not" / "yet" and not settings.work_dir.exists()  # created on use


def test_invalid_config_never_echoes_storage_credentials(monkeypatch) -> None:
    monkeypatch.setenv("TALKGEN_STORAGE_OPTIONS", '["secret-key-123"]')
    with pytest.raises(TalkgenError) as err:
        load_settings()
    assert "storage_options" in err.value.message and "secret-key-123" not in err.value.message


def test_storage_options_apply_to_a_protocol_s_aliases():
    pytest.importorskip("s3fs")
    settings = Settings(storage_options={"s3": {"endpoint_url": "http://127.0.0.1:9"}})
    assert settings.storage_options_for("s3a") == {"endpoint_url": "http://127.0.0.1:9"}
    assert settings.storage_options_for("S3") == {"endpoint_url": "http://127.0.0.1:9"}
    assert settings.storage_options_for("memory") == {}
