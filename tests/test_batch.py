"""Batch JSONL reading, sharding and status records (no engine: a stand-in service)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from talkgen.batch import (
    BatchItem,
    is_final,
    read_record,
    read_requests,
    record_url,
    run_item,
    shard,
    video_url,
    write_record,
)
from talkgen.errors import Cancelled, FetchFailed, InvalidConfig, TooLong
from talkgen.result import TalkResult
from talkgen.settings import Settings


def _jsonl(path: Path, *lines: str | dict[str, Any]) -> str:
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return str(path)


def test_lines_become_items_numbered_by_file_line(tmp_path):
    url = _jsonl(tmp_path / "b.jsonl", {"wav_path": "a.wav"}, "", "   ", {"job_id": "clip-7", "wav_path": "b"},
                 "{not json", "[1, 2]", {"job_id": "clip-7"}, {"job_id": "../etc/pass wd"}, {"job_id": 12})
    items = read_requests(url)
    assert [(i.line, i.key) for i in items] == [
        (1, "line-000001"), (4, "clip-7"), (5, "line-000005"), (6, "line-000006"), (7, "line-000007"),
        (8, "etc_pass_wd"), (9, "line-000009"),
    ]
    assert items[0].request == {"wav_path": "a.wav"} and items[0].error is None
    not_json, array, duplicate = items[2].error, items[3].error, items[4].error
    assert items[2].request is None and not_json.code == "invalid_request" and "Line 5" in not_json.message
    assert "not valid JSON" in not_json.message
    assert "Line 6" in array.message and "list, not an object" in array.message
    assert "Line 7" in duplicate.message and "'clip-7' is taken" in duplicate.message
    assert duplicate.to_dict()["details"] == {"line": 7}


def test_duplicate_keys_never_share_files(tmp_path):
    """A bad line's own key cannot clash with a request that chose the same name as its job_id."""
    url = _jsonl(tmp_path / "b.jsonl", {"job_id": "line-000002"}, "oops", {})
    assert [i.key for i in read_requests(url)] == ["line-000002", "line-000002-2", "line-000003"]


def test_a_line_over_the_limit_is_refused_alone(tmp_path):
    url = _jsonl(tmp_path / "b.jsonl", {"a": 1}, {"b": "x" * 5000}, {"c": 3})
    items = read_requests(url, max_line_bytes=1000)
    assert [i.key for i in items] == ["line-000001", "line-000002", "line-000003"]
    assert items[1].request is None and "longer than" in items[1].error.message
    assert items[2].request == {"c": 3}


def test_default_line_limit_follows_the_base64_setting(tmp_path, monkeypatch):
    from talkgen.batch.requests import line_limit

    monkeypatch.setenv("TALKGEN_MAX_BASE64_MB", "1")
    assert 5_000_000 < line_limit() < 7_000_000


def test_missing_or_unknown_requests_file_is_a_config_error(tmp_path):
    with pytest.raises(InvalidConfig, match="does not exist"):
        read_requests(str(tmp_path / "nope.jsonl"))
    with pytest.raises(InvalidConfig, match="cannot be opened"):
        read_requests("nosuchproto://bucket/b.jsonl")


def test_shards_cover_every_item_once():
    items = [BatchItem(n, f"k{n}", {}, None) for n in range(1, 11)]
    parts = [shard(items, i, 3) for i in range(3)]
    assert [[i.line for i in p] for p in parts] == [[1, 4, 7, 10], [2, 5, 8], [3, 6, 9]]
    assert shard(items, 0, 1) == items
    for index, count in ((3, 3), (-1, 2), (0, 0)):
        with pytest.raises(InvalidConfig, match="index"):
            shard(items, index, count)


def test_layout_under_a_prefix_with_or_without_slash():
    assert video_url("s3://b/out/", "k") == video_url("s3://b/out", "k") == "s3://b/out/k.mp4"
    assert record_url("/data/out", "k") == "/data/out/k.json"


class _Service:
    """What run_item uses of `TalkGen`: ``settings`` and ``generate``."""

    def __init__(self, outcome: Any) -> None:
        self.settings = Settings()
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    def generate(self, request, *, output=None, job_id=None, progress=None, cancel=None):  # type: ignore[no-untyped-def]
        self.calls.append({"request": request, "output": output, "job_id": job_id})
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(b"mp4")
        return self.outcome


def _result(job_id: str, output: str) -> TalkResult:
    return TalkResult(job_id=job_id, mode="i2v", engine="native", width=128, height=128, fps=25, frames=40,
                      duration=1.6, seed=3, video_path=output, size_bytes=3, timings={"generate": 1.0})


def test_run_item_writes_video_then_record(tmp_path):
    out = tmp_path / "out"
    item = BatchItem(3, "clip", {"wav_path": "x"}, None)
    service = _Service(_result("clip", str(out / "clip.mp4")))
    record = run_item(item, service, str(out))  # type: ignore[arg-type]
    assert service.calls == [{"request": {"wav_path": "x"}, "output": str(out / "clip.mp4"), "job_id": "clip"}]
    assert record["status"] == "succeeded" and record["key"] == "clip" and record["line"] == 3
    assert record["response"]["video_path"] == str(out / "clip.mp4") and record["finished_at"].endswith("+00:00")
    assert read_record(str(out), "clip") == record and is_final(record)
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.mp4"]


@pytest.mark.parametrize(("outcome", "code", "final"), [
    (TooLong("The audio is 9.0 s long."), "too_long", True),
    (FetchFailed("Could not fetch wav_url."), "fetch_failed", False),
    (RuntimeError("boom"), "internal_error", False),
])
def test_failures_are_records(tmp_path, outcome, code, final):
    record = run_item(BatchItem(1, "k", {}, None), _Service(outcome), str(tmp_path))  # type: ignore[arg-type]
    assert record["status"] == "failed" and record["response"]["error_code"] == code
    assert is_final(record) is final
    assert read_record(str(tmp_path), "k") == record


def test_a_bad_line_gets_its_record_without_running(tmp_path):
    items = read_requests(_jsonl(tmp_path / "b.jsonl", "{oops"))
    service = _Service(RuntimeError("must not run"))
    record = run_item(items[0], service, str(tmp_path / "out"))  # type: ignore[arg-type]
    assert service.calls == [] and is_final(record)
    assert record["response"]["error_code"] == "invalid_request" and "Line 1" in record["response"]["error"]


def test_a_job_cancelled_by_a_stopping_worker_leaves_no_record(tmp_path):
    record = run_item(BatchItem(1, "k", {}, None), _Service(Cancelled("stopped", retryable=True)),  # type: ignore[arg-type]
                      str(tmp_path))
    assert record["response"]["error_code"] == "cancelled" and not is_final(record)
    assert read_record(str(tmp_path), "k") is None and not list(tmp_path.iterdir())


def test_foreign_or_broken_files_are_not_records(tmp_path):
    (tmp_path / "a.json").write_text("not json")
    (tmp_path / "b.json").write_text(json.dumps({"key": "other", "status": "succeeded"}))
    assert read_record(str(tmp_path), "a") is None and read_record(str(tmp_path), "b") is None
    assert read_record(str(tmp_path), "missing") is None
    assert not is_final(None) and not is_final({"status": "failed", "response": {"retryable": True}})


def test_unwritable_prefix_is_output_failed(tmp_path):
    (tmp_path / "file").write_text("x")
    from talkgen.errors import OutputFailed

    with pytest.raises(OutputFailed, match="status record"):
        write_record(str(tmp_path / "file" / "sub"), {"key": "k"})


def test_requests_and_records_on_s3():
    pytest.importorskip("s3fs")
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        fs = s3.filesystem()
        fs.mkdir("batch")
        fs.pipe_file("batch/in/b.jsonl", b'{"job_id": "a"}\n\nnot json\n{"job_id": "b"}\n')
        flat, per_protocol = s3.storage_options, {"s3": s3.storage_options}
        for options in (flat, per_protocol):
            items = read_requests("s3://batch/in/b.jsonl", options)
            assert [(i.line, i.key, i.error is None) for i in items] == [
                (1, "a", True), (3, "line-000003", False), (4, "b", True)]
        record = {"key": "a", "line": 1, "status": "succeeded", "response": {}, "finished_at": "now"}
        assert write_record("s3://batch/out/", record, per_protocol) == "s3://batch/out/a.json"
        assert read_record("s3://batch/out", "a", flat) == record
        assert read_record("s3://batch/out", "b", flat) is None
        assert json.loads(fs.cat_file("batch/out/a.json")) == record
        with pytest.raises(InvalidConfig, match="does not exist"):
            read_requests("s3://batch/in/missing.jsonl", flat)


def test_storage_options_from_the_environment(monkeypatch):
    from talkgen.batch.storage import options_for

    monkeypatch.setenv("TALKGEN_STORAGE_OPTIONS", json.dumps({"s3": {"anon": True}}))
    assert options_for("s3://b/k", None) == {"anon": True}
    assert options_for("/local/path", None) == {} and options_for("gs://b/k", {"s3": {"anon": True}}) == {}
    assert options_for("s3://b/k", {"anon": False}) == {"anon": False}


def test_lines_across_read_chunks(tmp_path, monkeypatch):
    """Lines longer than a read chunk, CRLF endings and a last line without a newline all read whole."""
    import talkgen.batch.requests as batch_requests

    monkeypatch.setattr(batch_requests, "CHUNK", 7)
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"job_id": "first-one"}\r\n\n{"x": "' + b"y" * 40 + b'"}\n{"job_id": "last"}')
    items = read_requests(str(path), max_line_bytes=30)
    assert [(i.line, i.key, i.error is None) for i in items] == [
        (1, "first-one", True), (3, "line-000003", False), (4, "last", True)]
