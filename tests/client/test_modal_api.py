"""The client against the Modal app's job API (`talkgen.modal.jobs_api.build_job_api`) served by uvicorn on
loopback, its calls run by a thread pool through a real `TalkGen` with the test engine."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from talkgen.client import connect
from talkgen.client.command import cancel, status, submit
from talkgen.errors import Cancelled, ForbiddenSource, InvalidConfig, InvalidRequest, OutputFailed, TalkgenError
from tests.client.conftest import talk_request
from tests.client.stub_server import StubServer
from tests.support.runpod_local import free_port
from tests.support.video_check import decode

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
jobs_api = pytest.importorskip("talkgen.modal.jobs_api")


class FakeCalls:
    """Modal's spawn / FunctionCall lookup / cancel, on threads; ``prompt="hold"`` waits until released."""

    def __init__(self, service) -> None:  # type: ignore[no-untyped-def]
        self.service = service
        self.pool = ThreadPoolExecutor(2)
        self.calls: dict[str, Future] = {}
        self.cancelled: set[str] = set()
        self.release = threading.Event()
        self.progress: dict[str, object] = {}

    def spawn(self, request: dict) -> str:
        call_id = f"fc-{uuid.uuid4().hex[:12]}"
        self.calls[call_id] = self.pool.submit(self._run, call_id, request)
        return call_id

    def _run(self, call_id: str, request: dict) -> dict:
        if request.get("prompt") == "hold":
            self.progress[call_id] = {"stage": "queue", "fraction": 0.0, "percent": 8, "message": "waiting"}
            self.release.wait(30)
        try:
            result = self.service.generate(request, job_id=call_id,
                                           progress=lambda e: self.progress.__setitem__(call_id, e.to_dict()))
        except TalkgenError as exc:
            return exc.to_dict()
        return result.to_response()

    def lookup(self, call_id: str):  # type: ignore[no-untyped-def]
        if call_id not in self.calls:
            raise LookupError(call_id)
        future = self.calls[call_id]
        if call_id in self.cancelled:
            return jobs_api.CallState(cancelled=True)
        return jobs_api.CallState(done=True, output=future.result()) if future.done() else jobs_api.CallState()

    def cancel(self, call_id: str) -> None:
        self.cancelled.add(call_id)
        self.release.set()


def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def modal_app(service):  # type: ignore[no-untyped-def]
    calls = FakeCalls(service)
    app = jobs_api.build_job_api(calls.spawn, calls.lookup, calls.cancel, calls.progress)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        calls.release.set()
        server.should_exit = True
        thread.join(timeout=10)
        calls.pool.shutdown(wait=True)


def test_submit_wait_save_with_progress(modal_app, media_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, calls = modal_app
    seen = []
    with connect(f"modal:{url}") as client:
        job_id = client.submit(talk_request(media_dir, seed=3, prompt="hold"))
        _until(lambda: job_id in calls.progress)
        first = client.status(job_id)
        calls.release.set()
        response = client.wait(job_id, timeout=60, poll_s=0.05, on_progress=seen.append)
        path = client.save(response, tmp_path / "modal.mp4")
    assert job_id.startswith("fc-") and first.status == "IN_PROGRESS" and first.progress["stage"] == "queue"
    assert seen[-1].ok and response["seed"] == 3 and response["job_id"] == job_id
    assert decode(path).count == 50


def test_errors_keep_their_code(modal_app, media_dir: Path) -> None:  # type: ignore[no-untyped-def]
    url, _calls = modal_app
    with connect(f"modal:{url}") as client:
        job_id = client.submit(talk_request(media_dir, image_path="/etc/hostname"))  # outside the allowed roots
        with pytest.raises(ForbiddenSource) as caught:
            client.wait(job_id, timeout=60, poll_s=0.05)
        assert client.status(job_id).error["error_code"] == "forbidden_source"
        assert caught.value.field == "image_path"
        with pytest.raises(InvalidRequest, match="did you mean `width`"):  # the API's own 400, in talkgen's shape
            client.submit({**talk_request(media_dir), "widht": 1}, validate=False)
        with pytest.raises(InvalidRequest, match="No job fc-nope"):
            client.status("fc-nope")


def test_cancel_and_commands(modal_app, media_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, calls = modal_app
    request = tmp_path / "r.json"
    import json

    request.write_text(json.dumps(talk_request(media_dir, prompt="hold")))
    runner = CliRunner()
    queued = runner.invoke(submit, [str(request), "--to", f"modal:{url}"])
    assert queued.exit_code == 0, queued.output
    job_id = queued.output.strip()
    _until(lambda: job_id in calls.progress)
    shown = runner.invoke(status, [job_id, "--to", f"modal:{url}"])
    assert shown.exit_code == 0 and f"{job_id}: IN_PROGRESS" in shown.output and "queue: waiting" in shown.output
    stopped = runner.invoke(cancel, [job_id, "--to", f"modal:{url}", "--json"])
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(stopped.output)["status"] == "CANCELLED"
    with connect(f"modal:{url}") as client, pytest.raises(Cancelled):
        client.wait(job_id, timeout=10, poll_s=0.05)


def test_proxy_auth_headers_and_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    with StubServer() as stub:
        stub.on("GET", "/jobs/fc-1", (200, {"id": "fc-1", "status": "IN_QUEUE", "progress": None}))
        stub.on("GET", "/jobs/fc-2", (401, b"missing credentials for proxy authorization"))
        monkeypatch.setenv("TALKGEN_MODAL_KEY", "wk-1")
        monkeypatch.setenv("TALKGEN_MODAL_SECRET", "ws-1")
        with connect(f"modal:{stub.url}") as client:
            assert client.status("fc-1").status == "IN_QUEUE"
            with pytest.raises(InvalidConfig, match="set TALKGEN_MODAL_KEY and TALKGEN_MODAL_SECRET"):
                client.status("fc-2")
        headers = stub.calls[0][2]
        assert headers["modal-key"] == "wk-1" and headers["modal-secret"] == "ws-1"
        monkeypatch.delenv("TALKGEN_MODAL_SECRET")
        with pytest.raises(InvalidConfig, match="Set both"):
            connect(f"modal:{stub.url}")


def test_a_video_on_the_outputs_volume_needs_a_modal_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("modal")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.modal.toml
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with connect("modal:http://127.0.0.1:9", outputs_volume="my-outputs") as client:
        with pytest.raises(InvalidConfig, match="Modal Volume 'my-outputs' needs a Modal token: run `modal token new`"):
            client.save({"video_path": "/outputs/fc-1.mp4"}, tmp_path / "v.mp4")
        with pytest.raises(OutputFailed, match="inside the Modal container, not on the outputs Volume"):
            client.save({"video_path": "/tmp/elsewhere.mp4"}, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize(("answer", "status", "code"), [
    ({"status": "IN_QUEUE", "progress": None}, "IN_QUEUE", None),
    ({"status": "COMPLETED", "output": {"video_path": "/outputs/fc-1.mp4"}}, "COMPLETED", None),
    ({"status": "FAILED", "output": {"error": "too long", "error_code": "too_long", "retryable": False}},
     "FAILED", "too_long"),
    ({"status": "CANCELLED", "output": {"error": "stopped", "error_code": "cancelled"}}, "CANCELLED", "cancelled"),
    ({"status": "CANCELLED"}, "CANCELLED", "cancelled"),
    ({"status": "COMPLETED", "output": {"error": "bad", "error_code": "invalid_request"}}, "FAILED",
     "invalid_request"),
    ({"status": "COMPLETED"}, "FAILED", "output_failed"),
    ({"status": "FAILED", "error": "boom"}, "FAILED", "job_failed"),
    ({"status": "TIMED_OUT"}, "TIMED_OUT", "timeout"),
])
def test_status_answers(answer: dict, status: str, code: str | None) -> None:
    with StubServer() as stub:
        stub.on("GET", "/jobs/fc-1", (200, {"id": "fc-1", **answer}))
        with connect(f"modal:{stub.url}") as client:
            job = client.status("fc-1")
    assert job.status == status and (job.error or {}).get("error_code") == code
    assert (job.exception() is None) == (code is None)
