"""The client against the RunPod SDK's own local API server (``--rp_serve_api``) running the talkgen worker.

What that server offers (runpod 1.12): POST /run, POST /runsync, POST /status/{id}, POST /stream/{id}. A job
queued by /run runs inside the first POST /status and is then forgotten; GET /status is 405; a FAILED job
keeps only the message (no `error_code`); /stream needs a generator handler; there is no /cancel (404).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from talkgen.client import connect
from talkgen.client.command import cancel, result, status, submit
from talkgen.errors import InvalidRequest, TalkgenError
from tests.client.conftest import talk_request
from tests.support.video_check import decode


def test_submit_wait_and_save_a_decodable_video(runpod_server: str, client_media: Path, tmp_path: Path) -> None:
    seen = []
    with connect(f"runpod:{runpod_server}") as client:
        job_id = client.submit(talk_request(client_media, seed=5))
        assert job_id.startswith("test-")
        response = client.wait(job_id, timeout=120, poll_s=0.1, on_progress=seen.append)
        again = client.status(job_id)  # the server forgot the job; the client kept its final state
        saved = client.save(response, tmp_path / "out.mp4")
    assert [s.status for s in seen] == ["COMPLETED"] and seen[-1].ok and seen[-1].done
    assert again.ok and again.output == response
    assert response["video"].startswith("data:video/mp4;base64,") and response["seed"] == 5
    assert response["frames"] == 50 and response["mode"] == "I2V_single"
    video = decode(saved)
    assert video.count == 50 and (video.width, video.height) == (128, 128) and video.audio_codec == "aac"


def test_envelope_and_plus_scheme_are_the_same_target(runpod_server: str, client_media: Path) -> None:
    with connect(runpod_server.replace("http://", "runpod+http://")) as client:
        response = client.run({"input": talk_request(client_media, seed=9)}, timeout=120, poll_s=0.1)
    assert response["seed"] == 9 and response["frames"] == 50


def test_a_bad_request_is_a_failed_job_with_the_workers_message(runpod_server: str, client_media: Path) -> None:
    request = talk_request(client_media)
    del request["wav_path"]
    with connect(f"runpod:{runpod_server}") as client:
        with pytest.raises(InvalidRequest, match="needs speaker 1's audio"):
            client.submit(request)  # checked here first
        job_id = client.submit(request, validate=False)
        job = client.status(job_id)
        with pytest.raises(TalkgenError) as caught:
            client.wait(job_id, timeout=60, poll_s=0.1)
    assert job.status == "FAILED" and job.done and not job.ok and job.output is None
    # The local server keeps only RunPod's `error` string: the code the worker put beside it is lost.
    assert job.error == {"error": caught.value.message, "error_code": "job_failed", "retryable": False}
    assert caught.value.message.startswith("Mode I2V_single needs speaker 1's audio")
    assert caught.value.code == "job_failed" and caught.value.retryable is False


def test_a_typo_is_refused_before_anything_is_sent(runpod_server: str, client_media: Path) -> None:
    with connect(f"runpod:{runpod_server}") as client, pytest.raises(InvalidRequest, match="did you mean `width`"):
        client.submit({**talk_request(client_media), "widht": 64})


def test_cancel_and_stream_say_what_the_local_server_lacks(runpod_server: str, client_media: Path) -> None:
    with connect(f"runpod:{runpod_server}") as client:
        job_id = client.submit(talk_request(client_media))
        with pytest.raises(InvalidRequest, match="without /cancel such as the SDK's local"):
            client.cancel(job_id)
        with pytest.raises(InvalidRequest, match="handler must be a generator"):
            list(client.stream(job_id))
        assert client.wait(job_id, timeout=60, poll_s=0.1)["frames"] == 50  # the job is still there


def test_unknown_job_is_a_clear_error(runpod_server: str) -> None:
    with connect(f"runpod:{runpod_server}") as client, pytest.raises(InvalidRequest, match="does not know job"):
        client.status("test-nope")


def test_commands_submit_wait_status_result_cancel(runpod_server: str, client_media: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TALKGEN_TARGET", f"runpod:{runpod_server}")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"input": talk_request(client_media, seed=11)}))
    out = tmp_path / "cli.mp4"
    done = runner.invoke(submit, [str(request), "--wait", "-o", str(out), "--poll", "0.1"])
    assert done.exit_code == 0, done.output
    assert "COMPLETED, video" in done.output and str(out) in done.output
    assert decode(out).count == 50

    queued = runner.invoke(submit, [str(request), "--json"])
    assert queued.exit_code == 0, queued.output
    job_id = json.loads(queued.output)["id"]
    shown = runner.invoke(status, [job_id, "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["status"] == "COMPLETED" and body["output"]["video"].startswith("<inline data URI")
    missing = runner.invoke(result, [job_id, "--json"])  # another process: the server forgot the job
    assert missing.exit_code == 2 and json.loads(missing.output)["error_code"] == "invalid_request"

    queued = runner.invoke(submit, [str(request)]).output.strip()
    fetched = runner.invoke(result, [queued, "--json", "-o", str(tmp_path / "r.mp4")])
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.output)["output"]["seed"] == 11 and decode(tmp_path / "r.mp4").count == 50
    refused = runner.invoke(cancel, [queued])
    assert refused.exit_code == 2 and "cannot cancel" in refused.output


def test_the_sync_route_matches_what_the_client_returns(runpod_server: str, client_media: Path) -> None:
    sync = httpx.post(f"{runpod_server}/runsync", json={"input": talk_request(client_media, seed=4)},
                      trust_env=False, timeout=120).json()
    with connect(f"runpod:{runpod_server}") as client:
        response = client.run(talk_request(client_media, seed=4), timeout=120, poll_s=0.1)
    assert sync["status"] == "COMPLETED"
    assert response["params"]["engine_jobs"] == sync["output"]["params"]["engine_jobs"] + 1  # one warm engine
    ignore = {"job_id", "timings", "video", "params"}
    assert {k: v for k, v in response.items() if k not in ignore} == \
        {k: v for k, v in sync["output"].items() if k not in ignore}
