"""The client against a loopback stand-in for RunPod's hosted job API: routes, auth, status mapping, retries."""

from __future__ import annotations

import json

import pytest

from talkgen.client import connect
from talkgen.client import runpod as rp
from talkgen.errors import (
    Cancelled,
    EngineUnavailable,
    InternalError,
    InvalidConfig,
    InvalidRequest,
    OutputFailed,
    Timeout,
    TooLong,
)
from tests.client.stub_server import StubServer

RESPONSE = {"video_url": "s3://b/j1.mp4", "job_id": "j1", "frames": 50, "width": 128, "height": 128}
PROGRESS = {"stage": "generate", "fraction": 0.5, "percent": 54, "message": "window 1/2"}


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch):
    with StubServer() as server:
        monkeypatch.setattr(rp, "RUNPOD_API", f"{server.url}/v2")
        monkeypatch.setenv("RUNPOD_API_KEY", "rp-secret")
        yield server


def _client(**options):
    return connect("runpod:ep1", backoff_s=0.01, **options)


def test_hosted_endpoint_routes_auth_progress_and_response(stub: StubServer) -> None:
    stub.on("POST", "/v2/ep1/run", (200, {"id": "j1", "status": "IN_QUEUE"}))
    stub.on("GET", "/v2/ep1/status/j1", (200, {"id": "j1", "status": "IN_QUEUE"}),
            (200, {"id": "j1", "status": "IN_PROGRESS", "output": PROGRESS}),
            (200, {"id": "j1", "status": "COMPLETED", "output": RESPONSE, "executionTime": 900}))
    seen = []
    with _client() as client:
        response = client.run({"image_url": "https://x.example/a.png", "wav_url": "https://x.example/a.wav"},
                              poll_s=0.01, on_progress=seen.append)
    assert response == RESPONSE
    assert [(s.status, s.percent) for s in seen] == [("IN_QUEUE", None), ("IN_PROGRESS", 54), ("COMPLETED", None)]
    assert seen[1].progress == PROGRESS
    method, path, headers, body = stub.calls[0]
    assert (method, path) == ("POST", "/v2/ep1/run") and headers["authorization"] == "Bearer rp-secret"
    assert body == {"input": {"image_url": "https://x.example/a.png", "wav_url": "https://x.example/a.wav"}}
    assert stub.paths("GET") == ["GET /v2/ep1/status/j1"] * 3


@pytest.mark.parametrize(("answer", "error", "text"), [
    ({"status": "FAILED", "error": "Audio is 900 s; the limit is 600 s.",
      "output": {"error_code": "too_long", "retryable": False, "field": "wav_url"}}, TooLong, "Audio is 900 s"),
    ({"status": "FAILED", "error": json.dumps({"error_type": "<class 'KeyError'>", "error_message": "'x'",
                                               "error_traceback": "..."})}, InternalError, "raised KeyError: 'x'"),
    ({"status": "COMPLETED", "output": {"error": "bad", "error_code": "invalid_request", "retryable": False}},
     InvalidRequest, "bad"),
    ({"status": "COMPLETED"}, OutputFailed, "above about 20 MB"),
    ({"status": "COMPLETED", "output": PROGRESS}, OutputFailed, r"names no video \(fraction, message, percent"),
    ({"status": "TIMED_OUT"}, Timeout, "execution timeout"),
    ({"status": "CANCELLED"}, Cancelled, "was cancelled"),
])
def test_endings_become_the_matching_error(stub: StubServer, answer: dict, error: type, text: str) -> None:
    stub.on("GET", "/v2/ep1/status/j1", (200, {"id": "j1", **answer}))
    with _client() as client:
        job = client.status("j1")
        with pytest.raises(error, match=text) as caught:
            client.wait("j1", poll_s=0.01)
    assert job.done and not job.ok and job.error["error_code"] == caught.value.code
    if error is TooLong:
        assert caught.value.field == "wav_url" and caught.value.retryable is False
    if error is InternalError:
        assert caught.value.retryable is True


def test_a_request_over_runpods_limit_is_refused_before_sending(stub: StubServer) -> None:
    from talkgen.errors import MediaTooLarge

    big = {"image_url": "https://x.example/a.png", "wav_base64": "UklG" * 2_600_000}
    with _client() as client, pytest.raises(MediaTooLarge, match=r"10\.4 MB; RunPod takes at most 10 MB"):
        client.submit(big, validate=False)
    assert stub.calls == []


def test_cancel_posts_and_reports_cancelled(stub: StubServer) -> None:
    stub.on("POST", "/v2/ep1/cancel/j%2F1", (200, {"id": "j/1", "status": "CANCELLED"}))
    with _client() as client:
        job = client.cancel("j/1")
    assert job.status == "CANCELLED" and job.done and job.error["error_code"] == "cancelled"


def test_stream_yields_chunks_until_the_job_ends(stub: StubServer) -> None:
    stub.on("GET", "/v2/ep1/stream/j1", (200, {"status": "IN_PROGRESS", "stream": [{"output": {"n": 1}}]}),
            (200, {"status": "COMPLETED", "stream": [{"output": {"n": 2}}], "output": RESPONSE}))
    stub.on("GET", "/v2/ep1/stream/j2", (200, {"status": "IN_PROGRESS", "stream": []}),
            (200, {"status": "FAILED", "error": "no GPU", "output": {"error_code": "gpu_unavailable"}}))
    with _client(poll_s=0.01) as client:
        assert list(client.stream("j1")) == [{"n": 1}, {"n": 2}]
        from talkgen.errors import GpuUnavailable

        with pytest.raises(GpuUnavailable, match="no GPU"):
            list(client.stream("j2"))


def test_transient_answers_are_retried_with_backoff(stub: StubServer) -> None:
    stub.on("GET", "/v2/ep1/status/j1", (503, {}), (502, b"bad gateway"), (200, {"id": "j1", "status": "IN_QUEUE"}))
    stub.on("GET", "/v2/ep1/status/j2", (429, {}, {"Retry-After": "3"}), (200, {"id": "j2", "status": "IN_QUEUE"}))
    delays: list[float] = []
    with connect("runpod:ep1", backoff_s=0.5, sleep=delays.append) as client:
        assert client.status("j1").status == "IN_QUEUE"
        assert delays == [0.5, 1.0]  # doubling backoff
        assert client.status("j2").status == "IN_QUEUE"
        assert delays[2:] == [3.0]  # Retry-After wins over a shorter backoff
    assert stub.paths().count("GET /v2/ep1/status/j1") == 3


def test_a_lasting_outage_is_engine_unavailable(stub: StubServer) -> None:
    stub.on("GET", "/v2/ep1/status/j1", (503, {}))
    delays: list[float] = []
    with connect("runpod:ep1", retries=2, backoff_s=0.5, sleep=delays.append) as client, \
            pytest.raises(EngineUnavailable, match=r"HTTP 503 to GET .*/status/j1 after 3 tries") as caught:
        client.status("j1")
    assert delays == [0.5, 1.0] and caught.value.retryable is True


def test_a_submit_is_not_retried_where_it_may_have_arrived(stub: StubServer) -> None:
    stub.on("POST", "/v2/ep1/run", (500, {"detail": "boom"}))
    with _client() as client, pytest.raises(EngineUnavailable, match="HTTP 500"):
        client.submit({"image_url": "https://x.example/a.png", "wav_url": "https://x.example/a.wav"})
    assert stub.paths() == ["POST /v2/ep1/run"]
    stub.on("POST", "/v2/ep1/run", (503, {}), (200, {"id": "j9", "status": "IN_QUEUE"}))
    with _client() as client:
        assert client.submit({"image_url": "https://x.example/a.png", "wav_url": "https://x.example/a.wav"}) == "j9"


def test_refused_key_and_missing_key_name_the_variable(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    stub.on("GET", "/v2/ep1/status/j1", (401, {"error": "Unauthorized"}))
    with _client() as client, pytest.raises(InvalidConfig, match=r"HTTP 401.*set RUNPOD_API_KEY"):
        client.status("j1")
    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(InvalidConfig, match="Set RUNPOD_API_KEY"):
        connect("runpod:ep1")
    stub.on("GET", "/v2/ep1/status/j2", (200, {"id": "j2", "status": "IN_QUEUE"}))
    with connect("runpod:ep1", api_key="given") as client:
        assert client.status("j2").status == "IN_QUEUE"
    assert stub.calls[-1][2]["authorization"] == "Bearer given"


def test_unknown_job_wrong_api_and_unreachable(stub: StubServer) -> None:
    stub.on("GET", "/v2/ep1/status/old", (404, {"error": "job not found"}))
    stub.on("GET", "/v2/ep1/status/html", (200, b"<html>hello</html>"))
    stub.on("GET", "/v2/ep1/status/odd", (200, {"id": "odd", "status": "SLEEPING"}))
    with _client() as client:
        with pytest.raises(InvalidRequest, match=r"HTTP 404.*30 min"):
            client.status("old")
        with pytest.raises(EngineUnavailable, match="not a JSON object"):
            client.status("html")
        with pytest.raises(OutputFailed, match="unknown job status 'SLEEPING'"):
            client.status("odd")
    from tests.support.runpod_local import free_port

    delays: list[float] = []
    with connect(f"runpod:http://127.0.0.1:{free_port()}", retries=2, sleep=delays.append) as client, \
            pytest.raises(EngineUnavailable, match=r"Cannot reach .* after 3 tries: ConnectError"):
        client.status("j1")
    assert len(delays) == 2


def test_wait_timeout_leaves_the_job_running(stub: StubServer) -> None:
    stub.on("GET", "/v2/ep1/status/j1", (200, {"id": "j1", "status": "IN_PROGRESS", "output": PROGRESS}))
    with _client() as client, pytest.raises(Timeout, match=r"still IN_PROGRESS after 0.2 s; it keeps running"):
        client.wait("j1", timeout=0.2, poll_s=0.05)
