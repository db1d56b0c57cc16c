"""The web job API over real loopback HTTP (uvicorn on 127.0.0.1), with an in-process spawn running TalkGen."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from talkgen.modal.jobs_api import build_job_api
from talkgen.modal.worker import Worker
from tests.modal.conftest import tiny_request
from tests.modal.local_jobs import LocalJobs
from tests.support.video_check import decode


class GatedStore(dict):
    """A progress store that holds the job at its first ``load`` record until the test has seen it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writes: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.writes.append((key, value))
        if isinstance(value, dict) and value.get("stage") == "load":
            self.release.wait(30)


class Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api(bar_settings) -> Iterator[tuple[httpx.Client, LocalJobs, GatedStore]]:  # type: ignore[no-untyped-def]
    from talkgen.modal.settings import ModalSettings
    from talkgen.service import TalkGen

    store = GatedStore()
    service = TalkGen(bar_settings)
    jobs = LocalJobs(Worker(ModalSettings(), progress_store=store, service=service))
    app = build_job_api(jobs.spawn, jobs.lookup, jobs.cancel, store)
    with Server(app) as client:
        yield client, jobs, store
    store.release.set()
    jobs.close()
    service.close()


def poll(client: httpx.Client, job_id: str, until: set[str], stage: str | None = None,
         timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if body["status"] in until and (stage is None or (body["progress"] or {}).get("stage") == stage):
            return body
        assert time.monotonic() < deadline, f"still {body}"
        time.sleep(0.05)


def test_submit_poll_with_progress_to_completed(api, modal_media: Path, bar_settings):  # type: ignore[no-untyped-def]
    client, jobs, store = api
    jobs.gate.clear()
    reply = client.post("/jobs", json={"input": tiny_request(modal_media)})
    assert reply.status_code == 200 and reply.json()["status"] == "IN_QUEUE"
    job_id = reply.json()["id"]
    assert client.get(f"/jobs/{job_id}").json() == {"id": job_id, "progress": None, "status": "IN_QUEUE"}

    jobs.gate.set()
    running = poll(client, job_id, {"IN_PROGRESS"}, stage="load")  # the store holds the job there
    assert running["progress"] == {"stage": "load", "fraction": 1.0, "percent": 12, "message": "engine test-bars ready"}
    assert "output" not in running
    store.release.set()
    done = poll(client, job_id, {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED", done
    assert done["progress"]["percent"] == 100
    output = done["output"]
    assert output["video_path"] == str(bar_settings.volume_dir / f"{job_id}.mp4") and "video" not in output
    video = decode(Path(output["video_path"]))
    assert (video.count, video.width, video.height) == (40, 128, 128)
    assert [v["stage"] for k, v in store.writes if k == job_id][:3] == ["validate", "fetch", "prepare"]
    # a finished job is not cancelled: DELETE says how it ended
    assert client.delete(f"/jobs/{job_id}").json()["status"] == "COMPLETED"


def test_bare_request_and_a_failing_job(api, modal_media: Path):  # type: ignore[no-untyped-def]
    client, _, store = api
    store.release.set()
    request = tiny_request(modal_media, wav_path=str(modal_media / "missing.wav"))
    job_id = client.post("/jobs", json=request).json()["id"]
    failed = poll(client, job_id, {"COMPLETED", "FAILED"})
    assert failed["status"] == "FAILED"
    assert failed["output"]["error_code"] == "media_unreadable" and failed["output"]["field"] == "wav_path", failed
    assert failed["progress"]["stage"] == "fetch"  # where it stopped


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"image_path": 5}', b'{"input": {"image_path": 5}}',
                                  b'{"input": "x"}', b'{"wav_path": "a.wav"}'])
def test_bad_input_is_400_and_spawns_nothing(api, body: bytes):  # type: ignore[no-untyped-def]
    client, jobs, _ = api
    reply = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()
    assert error["error_code"] in {"invalid_request", "missing_media"} and error["retryable"] is False
    assert error["error"]
    assert jobs.jobs == {}


def test_cancel_a_queued_job(api, modal_media: Path):  # type: ignore[no-untyped-def]
    client, jobs, _ = api
    jobs.gate.clear()
    first = client.post("/jobs", json=tiny_request(modal_media)).json()["id"]
    second = client.post("/jobs", json=tiny_request(modal_media)).json()["id"]  # behind the first (one worker)
    assert client.delete(f"/jobs/{second}").json() == {"id": second, "status": "CANCELLED"}
    assert client.get(f"/jobs/{second}").json()["status"] == "CANCELLED"
    assert client.delete(f"/jobs/{first}").json()["status"] == "CANCELLED"  # held at the gate: its flag is set
    jobs.gate.set()
    assert poll(client, first, {"CANCELLED", "COMPLETED", "FAILED"})["status"] == "CANCELLED"


@pytest.mark.parametrize("job_id", ["fc-unknown", "a%20b", "x" * 200])
def test_unknown_id_is_404(api, job_id: str):  # type: ignore[no-untyped-def]
    client, _, _ = api
    for reply in (client.get(f"/jobs/{job_id}"), client.delete(f"/jobs/{job_id}")):
        assert reply.status_code == 404
        assert reply.json()["error_code"] == "invalid_request" and reply.json()["field"] == "id"


def test_platform_refusal_is_502():
    def refuse(request: dict) -> str:
        raise RuntimeError("quota")

    app = build_job_api(refuse, lambda i: (_ for _ in ()).throw(LookupError(i)), lambda i: None, {})
    with Server(app) as client:
        reply = client.post("/jobs", json={"image_path": "a.png", "wav_path": "a.wav"})
        assert reply.status_code == 502 and reply.json()["error_code"] == "internal_error"
        assert reply.json()["retryable"] is True
        assert client.get("/health").json() == {"ok": True}


def test_status_words():
    from talkgen.modal.jobs_api import CallState, job_status

    error = {"error": "x", "error_code": "cancelled", "retryable": True}
    assert job_status("a", CallState(), None, False)["status"] == "IN_QUEUE"
    assert job_status("a", CallState(), {"stage": "fetch"}, False)["status"] == "IN_PROGRESS"
    assert job_status("a", CallState(), None, True)["status"] == "CANCELLED"
    assert job_status("a", CallState(done=True, output=error), None, True)["status"] == "CANCELLED"
    assert job_status("a", CallState(done=True, output=error), None, False)["status"] == "FAILED"
    assert job_status("a", CallState(done=True, output={"video_path": "v"}), None, True)["status"] == "COMPLETED"
    assert job_status("a", CallState(done=True, cancelled=True), None, False)["status"] == "CANCELLED"
    broken = job_status("a", CallState(done=True, output=None), None, False)
    assert broken["status"] == "FAILED" and broken["output"]["error_code"] == "internal_error"
