"""Client and remote faults get a precise code naming the field; `internal_error` is kept for bugs.

Each case went through the RunPod handler in-process as `internal_error` (retryable) or a wrong code
before; the handler must also never raise, and never show the worker's own directories.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tests.conftest import assert_no_leftovers

pytest.importorskip("runpod")


@pytest.fixture
def worker(service, monkeypatch):
    """The RunPod runtime with its warm service replaced by one using the test settings; no progress calls."""
    import runpod

    from talkgen.runtimes import runpod as rp

    monkeypatch.setattr(rp, "_service", service)
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, progress: None)
    return rp


@pytest.fixture
def memory_wav(media_dir: Path):
    """speech.wav in fsspec's memory filesystem at memory://voice.wav."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pipe("/voice.wav", (media_dir / "speech.wav").read_bytes())
    yield "voice.wav"
    fs.store.clear()


def _request(media_dir: Path, **extra) -> dict:
    request = {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "speech.wav"),
               "width": 128, "height": 128}
    request.update(extra)
    return {k: v for k, v in request.items() if v is not None}


def _error(out: dict, code: str, field: str | None, retryable: bool = False) -> str:
    assert "video" not in out, "the job should have failed"
    assert (out["error_code"], out.get("field"), out["retryable"]) == (code, field, retryable), out
    assert "Traceback" not in out["error"]
    return out["error"]


def test_upper_case_storage_protocols_are_read(worker, media_dir: Path, memory_wav: str, work_root: Path) -> None:
    out = worker.handler({"id": "up", "input": _request(media_dir, wav_path=None, wav_url=f"MEMORY://{memory_wav}")})
    assert out.get("frames") == 50, out
    assert_no_leftovers(work_root)


@pytest.mark.parametrize(("url", "code", "retryable", "words"), [
    ("dbfs://workspace/a.wav", "unsupported_media", False, "cannot be read"),  # needs parameters a URL lacks
    ("MEMORY://missing.wav", "media_unreadable", False, "not found"),
    ("s3::memory://a.wav", "unsupported_media", False, "no media source"),
])
def test_storage_urls_the_server_cannot_read_are_coded(worker, media_dir: Path, url: str, code: str,
                                                       retryable: bool, words: str, work_root: Path) -> None:
    out = worker.handler({"id": "s", "input": _request(media_dir, wav_path=None, wav_url=url)})
    assert words in _error(out, code, "wav_url", retryable)
    assert_no_leftovers(work_root)


def test_a_storage_endpoint_that_is_down_is_a_retryable_fetch_failure(worker, service, media_dir: Path,
                                                                      work_root: Path, monkeypatch) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    down = {"key": "k", "secret": "s", "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    service.settings = service.settings.model_copy(update={"storage_options": {"s3": down}})
    out = worker.handler({"id": "d", "input": _request(media_dir, wav_path=None, wav_url="S3://bucket/a.wav")})
    assert "try again later" in _error(out, "fetch_failed", "wav_url", retryable=True)
    service.settings = service.settings.model_copy(update={"storage_options": {"s3": {
        **down, "key": None, "secret": None}}})
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    out = worker.handler({"id": "c", "input": _request(media_dir, wav_path=None, wav_url="s3://bucket/a.wav")})
    assert "credentials" in _error(out, "fetch_failed", "wav_url", retryable=False)
    assert_no_leftovers(work_root)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("wav_path", "/tmp/a\x00.wav", "NUL"),
    ("output_url", "/tmp/out\x00/x.mp4", "NUL"),
    ("max_frame", 10**400, "less than or equal to"),
    ("max_frame", float("inf"), "finite"),
    ("max_duration", 0.01, "shorter than one video frame"),
    ("max_duration", float("nan"), "greater than 0"),
    ("seed", 10**400, "less than"),
    ("width", 10**400, "128 to 1920"),
])
def test_request_values_no_system_can_take_are_invalid_requests(worker, media_dir: Path, field: str, value,
                                                                 words: str, work_root: Path) -> None:
    out = worker.handler({"id": "v", "input": _request(media_dir, **{field: value})})
    message = _error(out, "invalid_request", field)
    assert words in message and len(message) < 500
    assert_no_leftovers(work_root)


@pytest.mark.parametrize("box", [[0, 0, float("nan"), 10], [0, 0, 10, float("inf")], [float("-inf"), 0, 1, 1]])
def test_non_finite_speaker_boxes_are_invalid_requests(worker, media_dir: Path, box: list[float]) -> None:
    request = _request(media_dir, person_count="multi", wav_path_2=str(media_dir / "speech2.wav"),
                       speaker_boxes=[box, [0, 0, 10, 10]])
    assert "finite" in _error(worker.handler({"id": "b", "input": request}), "invalid_request", "speaker_boxes")


@pytest.mark.parametrize(("job", "words"), [
    (None, "got NoneType"), ("text", "got str"), ({"input": None}, "got NoneType"), ({"input": [1]}, "got list"),
    ({"input": "not json"}, "not valid JSON"), ({"input": '{"seed": ' + "9" * 5000 + "}"}, "not valid JSON"),
    ({"input": "[" * 100_000 + "]" * 100_000}, "nested too deeply"),
    ({"input": json.dumps({"prompt": "x"})[:-1] + ', "wav_url": ' + "[" * 50_000 + "]" * 50_000 + "}"},
     "nested too deeply"),
])
def test_jobs_that_are_not_requests_are_coded_never_raised(worker, job, words: str) -> None:
    assert words in _error(worker.handler(job), "invalid_request", "input")


def test_a_3mb_path_is_refused_quickly_and_echoed_short(worker, media_dir: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="talkgen")
    start = time.monotonic()
    out = worker.handler({"id": "p", "input": _request(media_dir, wav_path="/x" * 1_500_000)})
    message = _error(out, "invalid_request", "wav_path")
    assert time.monotonic() - start < 5 and len(message) < 600 and "3000000 characters" in message
    assert max(len(r.getMessage()) for r in caplog.records) < 5000


def test_unknown_fields_and_long_values_are_echoed_short(worker, media_dir: Path) -> None:
    out = worker.handler({"id": "u", "input": {**_request(media_dir), "k" * 100_000: 1, "x\ud800": 2}})
    assert len(_error(out, "invalid_request", "k" * 57 + "...")) < 1000


def test_an_uncreatable_work_dir_is_invalid_config(worker, monkeypatch, media_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("TALKGEN_WORK_DIR", str(tmp_path / "a-file" / "work"))
    monkeypatch.setattr(worker, "_service", None)
    out = worker.handler({"id": "w", "input": _request(media_dir)})
    assert "TALKGEN_WORK_DIR" in _error(out, "invalid_config", None)


def test_missing_weights_are_not_retryable_and_hide_the_models_dir(worker, service, media_dir: Path,
                                                                    tmp_path: Path, caplog) -> None:
    pytest.importorskip("torch")
    models = tmp_path / "secret-models-location"
    service.settings = service.settings.model_copy(update={"engine": "native", "models_dir": models})
    service.default_engine = "native"
    caplog.set_level(logging.WARNING, logger="talkgen")
    out = worker.handler({"id": "m", "input": _request(media_dir)})
    message = _error(out, "engine_unavailable", None)
    assert "talkgen models download" in message and "secret-models-location" not in message
    assert any("secret-models-location" in r.getMessage() for r in caplog.records)  # the operator's log has it


def test_shown_bounds_any_value_and_messages_are_capped() -> None:
    from talkgen.errors import MESSAGE_LIMIT, InvalidRequest, shown

    assert shown("abc") == "'abc'" and shown(1.5) == "1.5" and shown(None) == "None"
    assert shown("x" * 10_000) == repr("x" * 200) + "… (10000 characters)"
    assert shown(10**5000) == "an integer of about 5000 digits"  # str() of it would raise
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert shown(deep) == "list of 1 item" and shown(b"\0" * 9) == "bytes of 9 bytes"
    error = InvalidRequest("m" * 1_000_000 + "\ud800", private="p" * 1_000_000)
    assert len(error.message) < MESSAGE_LIMIT + 100 and len(error.private or "") < MESSAGE_LIMIT + 100
    assert "private" not in json.dumps(error.to_dict()) and "ppp" not in json.dumps(error.to_dict())
    assert InvalidRequest("a\ud800b").message.encode("utf-8") == b"a\\ud800b"
