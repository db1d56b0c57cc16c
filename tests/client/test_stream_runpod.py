"""A streaming RunPod worker (TALKGEN_RUNPOD_STREAM=true) behind the SDK's own local API server (``--rp_serve_api``):
/stream gets the segment events in order then the response, /runsync and /status the list of everything the
worker yielded (the response last), and the client streams, waits and saves through it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from talkgen.client import connect
from talkgen.errors import InvalidRequest, MissingMedia
from tests.conftest import subprocess_env
from tests.support.media_factory import make_image, make_wav
from tests.support.runpod_local import local_api_server
from tests.support.video_check import decode
from tests.test_runpod_stream import WINDOWED

pytest.importorskip("runpod")
WINDOWS = 3  # 7 s of speech: 175 frames, windows of 81 then 72 new frames
SEGMENT_FIELDS = ["event", "job_id", "window", "index", "url", "playlist", "frames", "seconds", "start"]


@pytest.fixture(scope="module")
def stream_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stream-media")
    make_image(d / "face.png", 96, 64)
    make_wav(d / "long.wav", seconds=7.0, freq=200.0)
    return d


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rp-volume")


@pytest.fixture(scope="module")
def streaming_server(stream_media: Path, volume: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The RunPod worker (`talkgen.runtimes.runpod.main`) with ``--rp_serve_api`` as a streaming worker on a free
    loopback port; the windowed test engine (a segment per window) is registered first."""
    work = tmp_path_factory.mktemp("rp-stream-work")
    log = tmp_path_factory.mktemp("rp-stream-log") / "server.log"
    env = subprocess_env(TALKGEN_ENGINE="test-bars", TALKGEN_ALLOWED_PATH_ROOTS=str(stream_media),
                         TALKGEN_WORK_DIR=str(work), TALKGEN_VOLUME_DIR=str(volume), TALKGEN_RUNPOD_STREAM="true",
                         UVICORN_LOG_LEVEL="warning")
    command = [sys.executable, "-c", "from tests.test_runpod_stream import serve; serve()"]
    with local_api_server(command, env, log) as url:
        yield url
        assert "Traceback" not in log.read_text()


def stream_request(media: Path, **extra: Any) -> dict[str, Any]:
    return {"image_path": str(media / "face.png"), "wav_path": str(media / "long.wav"), "width": 128, "height": 128,
            "network_volume": True, "stream": True, "engine": WINDOWED, **extra}


def post(url: str, route: str, **body: Any) -> dict[str, Any]:
    reply = httpx.post(f"{url}{route}", json=body or None, trust_env=False, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()


def check_stream(events: list[dict[str, Any]], response: dict[str, Any], volume: Path) -> None:
    assert [list(e) for e in events] == [SEGMENT_FIELDS] * WINDOWS, events
    assert [(e["event"], e["window"], e["index"]) for e in events] == [("segment", i, i) for i in range(WINDOWS)]
    assert sum(e["frames"] for e in events) == response["frames"] == 175
    assert sum(e["seconds"] for e in events) == pytest.approx(7.0, abs=0.05)
    hls = volume / f"talkgen_{response['job_id']}.hls"
    assert response["playlist"] == str(hls / "playlist.m3u8") and response["segments"] == WINDOWS
    assert {e["playlist"] for e in events} == {response["playlist"]}
    assert [e["url"] for e in events] == [str(hls / f"segment-{i:05d}.ts") for i in range(WINDOWS)]
    assert [decode(Path(e["url"])).count for e in events] == [e["frames"] for e in events]
    assert response["video_path"] == str(volume / f"talkgen_{response['job_id']}.mp4")
    assert decode(Path(response["video_path"])).count == 175


def test_stream_route_yields_the_segments_in_order_then_the_response(streaming_server: str, stream_media: Path,
                                                                     volume: Path) -> None:
    job_id = post(streaming_server, "/run", input=stream_request(stream_media))["id"]
    body = post(streaming_server, f"/stream/{job_id}")
    assert body["status"] == "COMPLETED", body
    items = [chunk["output"] for chunk in body["stream"]]
    check_stream(items[:-1], items[-1], volume)
    assert items[-1]["job_id"] == job_id and "event" not in items[-1]


def test_runsync_answers_the_list_with_the_response_last(streaming_server: str, stream_media: Path,
                                                         volume: Path) -> None:
    body = post(streaming_server, "/runsync", input=stream_request(stream_media, seed=8))
    assert body["status"] == "COMPLETED", body
    output = body["output"]
    assert isinstance(output, list) and len(output) == WINDOWS + 1
    check_stream(output[:-1], output[-1], volume)
    assert output[-1]["seed"] == 8 and output[-1]["mode"] == "I2V_single"
    # a request that does not stream, on the streaming worker: [the response] (inline, as a plain worker's)
    plain = post(streaming_server, "/runsync", input={**stream_request(stream_media), "stream": False,
                                                      "network_volume": False})["output"]
    assert len(plain) == 1 and plain[0]["video"].startswith("data:video/mp4;base64,") and "playlist" not in plain[0]
    # an error: the SDK's local server lists the error dict as the output (RunPod marks the job FAILED)
    failed = post(streaming_server, "/runsync", input={**stream_request(stream_media), "network_volume": False})
    assert failed["status"] == "COMPLETED" and failed["output"][-1]["error_code"] == "invalid_request"
    assert failed["output"][-1]["field"] == "stream" and "Traceback" not in str(failed)


def test_client_streams_the_events_then_the_response(streaming_server: str, stream_media: Path, volume: Path,
                                                     tmp_path: Path) -> None:
    with connect(f"runpod:{streaming_server}") as client:
        job_id = client.submit(stream_request(stream_media))
        items = list(client.stream(job_id))
        check_stream(items[:-1], items[-1], volume)
        assert client.wait(job_id, timeout=5) == items[-1]  # the server forgot the job: the client kept it
        saved = client.save(items[-1], tmp_path / "streamed.mp4")
        assert decode(saved).count == 175
        # status and wait unwrap the streaming worker's list
        response = client.run(stream_request(stream_media, seed=2), timeout=120, poll_s=0.1)
        assert response["seed"] == 2 and response["segments"] == WINDOWS and "event" not in response


def test_client_stream_raises_the_jobs_error(streaming_server: str, stream_media: Path) -> None:
    with connect(f"runpod:{streaming_server}") as client:
        missing = stream_request(stream_media)
        del missing["wav_path"]
        job_id = client.submit(missing, validate=False)
        with pytest.raises(MissingMedia, match="needs speaker 1's audio"):
            list(client.stream(job_id))
        inline = client.submit({**stream_request(stream_media), "network_volume": False})
        with pytest.raises(InvalidRequest, match="output_url"):
            client.wait(inline, timeout=60, poll_s=0.1)


def test_hosted_stream_arrives_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """RunPod's hosted /stream answers what is new since the last read; the client yields it as it comes."""
    from talkgen.client import runpod as rp
    from talkgen.errors import GpuUnavailable
    from tests.client.stub_server import StubServer

    def event(i: int) -> dict[str, Any]:
        return {"event": "segment", "job_id": "j1", "window": i, "index": i, "url": f"https://b/s{i}.ts?sig",
                "playlist": "https://b/p.m3u8?sig", "frames": 72, "seconds": 2.88, "start": 2.88 * i}

    response = {"video_url": "s3://b/j1.mp4", "job_id": "j1", "frames": 144, "playlist": "https://b/p.m3u8?sig",
                "segments": 2}
    with StubServer() as stub:
        monkeypatch.setattr(rp, "RUNPOD_API", f"{stub.url}/v2")
        monkeypatch.setenv("RUNPOD_API_KEY", "rp-secret")
        stub.on("GET", "/v2/ep1/stream/j1", (200, {"status": "IN_QUEUE", "stream": []}),
                (200, {"status": "IN_PROGRESS", "stream": [{"output": event(0)}]}),
                (200, {"status": "COMPLETED", "stream": [{"output": event(1)}, {"output": response}]}))
        stub.on("GET", "/v2/ep1/stream/j2", (200, {"status": "IN_PROGRESS", "stream": [{"output": event(0)}]}),
                (200, {"status": "FAILED", "error": "no GPU", "output": {"error_code": "gpu_unavailable"}}))
        with connect("runpod:ep1", backoff_s=0.01, poll_s=0.01) as client:
            got = []
            for item in client.stream("j1"):
                got.append(item)
                if len(got) == 1:  # the first event arrives while the job still runs
                    assert len(stub.paths("GET")) == 2
            assert got == [event(0), event(1), response]
            assert client.status("j1").output == response  # remembered: no further request
            assert len(stub.paths("GET")) == 3
            seen = []
            with pytest.raises(GpuUnavailable, match="no GPU"):
                seen.extend(client.stream("j2"))
            assert seen == [event(0)]
