"""The batch logic of `modal run deploy/modal_app.py::batch`, with ``.map`` replaced by an in-process map."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talkgen.errors import InvalidConfig
from talkgen.modal.batch import check_output, local_requests, run_batch
from talkgen.modal.settings import ModalSettings
from talkgen.modal.worker import Worker
from tests.modal.conftest import tiny_request
from tests.support.video_check import decode


def in_process_map(worker: Worker, crash: set[str] = frozenset(), calls: list[str] | None = None):  # type: ignore[no-untyped-def,assignment]
    """What ``TalkGenWorker().generate.map(requests, outputs, keys, return_exceptions=True)`` yields, in order;
    a key in ``crash`` stands for a call that died (the exception is returned, not raised)."""

    def map_fn(requests: list[dict], outputs: list[str], keys: list[str]) -> Iterator[Any]:
        for request, output, key in zip(requests, outputs, keys, strict=True):
            if calls is not None:
                calls.append(key)
            yield RuntimeError("container died") if key in crash else worker.generate(request, output=output,
                                                                                      job_id=key)

    return map_fn


def write_batch(path: Path, media: Path) -> Path:
    lines = [
        json.dumps(tiny_request(media, job_id="alpha")),
        "this is not json",
        "",
        json.dumps(tiny_request(media, seed=5)),  # no job_id: keyed by its line
        json.dumps(tiny_request(media, job_id="gone", wav_path=str(media / "missing.wav"))),
        json.dumps(tiny_request(media, job_id="boom")),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def worker(bar_settings) -> Iterator[Worker]:  # type: ignore[no-untyped-def]
    from talkgen.service import TalkGen

    service = TalkGen(bar_settings)
    yield Worker(ModalSettings(), service=service)
    service.close()


def test_one_record_per_request_and_failures_lose_nothing(worker: Worker, modal_media: Path, tmp_path: Path):
    requests = write_batch(tmp_path / "batch.jsonl", modal_media)
    out = tmp_path / "out"
    summary = run_batch(str(requests), str(out) + "/", in_process_map(worker, crash={"boom"}))
    assert summary.to_dict() == {"results": f"{out}/results.jsonl", "succeeded": 2, "failed": 3, "skipped": 0,
                                 "failed_keys": ["line-000002", "gone", "boom"]}

    records = read_jsonl((out / "results.jsonl").read_text())
    assert [(r["line"], r["key"], r["status"]) for r in records] == [
        (1, "alpha", "succeeded"), (2, "line-000002", "failed"), (4, "line-000004", "succeeded"),
        (5, "gone", "failed"), (6, "boom", "failed")]
    by_key = {r["key"]: r for r in records}
    assert by_key["line-000002"]["response"]["error_code"] == "invalid_request"
    assert "Line 2" in by_key["line-000002"]["response"]["error"]
    assert by_key["gone"]["response"]["error_code"] == "media_unreadable"
    assert by_key["boom"]["response"] == {"error": "Internal error (the call failed: RuntimeError); the worker's log "
                                          "has the details.", "error_code": "internal_error", "retryable": True}
    for key in ("alpha", "line-000004"):
        response = by_key[key]["response"]
        assert response["video_path"] == str(out / f"{key}.mp4") and response["job_id"] == key
        video = decode(out / f"{key}.mp4")
        assert (video.count, video.width, video.height) == (40, 128, 128)
        assert json.loads((out / f"{key}.json").read_text()) == by_key[key]  # the status record beside it
    assert json.loads((out / "gone.json").read_text())["status"] == "failed"
    assert by_key["alpha"]["finished_at"].endswith("+00:00")


def test_rerun_skips_final_records(worker: Worker, modal_media: Path, tmp_path: Path):
    requests = write_batch(tmp_path / "batch.jsonl", modal_media)
    out = str(tmp_path / "out")
    run_batch(str(requests), out, in_process_map(worker, crash={"boom"}))
    calls: list[str] = []
    summary = run_batch(str(requests), out, in_process_map(worker, calls=calls))
    assert calls == ["boom"]  # the retryable failure runs again; succeeded and bad-input ones are final
    assert (summary.succeeded, summary.failed, summary.skipped) == (3, 2, 3)
    statuses = {r["key"]: r["status"] for r in read_jsonl((tmp_path / "out" / "results.jsonl").read_text())}
    assert statuses["boom"] == "succeeded"


def test_batch_on_s3(bar_settings, modal_media: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    pytest.importorskip("moto")
    from talkgen.service import TalkGen
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        fs = s3.filesystem()
        fs.mkdir("talkgen-batch")
        fs.pipe_file("talkgen-batch/in/batch.jsonl", write_batch(tmp_path / "b.jsonl", modal_media).read_bytes())
        options = {"s3": s3.storage_options}
        service = TalkGen(bar_settings.model_copy(update={"storage_options": options}))
        try:
            summary = run_batch("s3://talkgen-batch/in/batch.jsonl", "s3://talkgen-batch/out",
                                in_process_map(Worker(ModalSettings(), service=service)), options)
        finally:
            service.close()
        assert (summary.succeeded, summary.failed) == (3, 2)
        records = read_jsonl(fs.cat_file("talkgen-batch/out/results.jsonl").decode())
        alpha = next(r for r in records if r["key"] == "alpha")
        assert alpha["response"]["video_url"] == "s3://talkgen-batch/out/alpha.mp4"
        local = tmp_path / "alpha.mp4"
        fs.get_file("talkgen-batch/out/alpha.mp4", str(local))
        assert decode(local).count == 40
        assert json.loads(fs.cat_file("talkgen-batch/out/alpha.json"))["status"] == "succeeded"


def test_unreadable_requests_file(worker: Worker, tmp_path: Path):
    with pytest.raises(InvalidConfig, match="does not exist"):
        run_batch(str(tmp_path / "nope.jsonl"), str(tmp_path / "out"), in_process_map(worker))


def test_entrypoint_checks(tmp_path: Path):
    check_output("/outputs/batch-1/")
    check_output("s3://bucket/prefix/")
    with pytest.raises(InvalidConfig, match=r"--output .* cannot write: use /outputs/<name>/"):
        check_output(str(tmp_path / "out"))
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"image_path": "a.png"}\n')
    assert local_requests(str(jsonl)) == '{"image_path": "a.png"}\n'  # a local file travels with the call
    assert local_requests("s3://bucket/b.jsonl") is None and local_requests("/outputs/in/b.jsonl") is None
    with pytest.raises(InvalidConfig, match="does not exist"):
        local_requests(str(tmp_path / "missing.jsonl"))
