"""The client's Kubernetes platform against the loopback Jobs API stand-in (tests/support/k8s_api.py); the
Job's pod is played by running its ``talkgen k8s run`` shard in-process (`talkgen.k8s.runner.execute_shard`)
with the test engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkgen.client import connect
from talkgen.errors import InvalidConfig, InvalidRequest, MissingMedia, OutputFailed, Timeout
from tests.client.conftest import talk_request
from tests.support.video_check import decode

pytest.importorskip("kubernetes")

NS = "team-a"
IMAGE = "registry.example.com/talkgen-native:1.0"


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    from tests.support.k8s_api import FakeJobsApi

    with FakeJobsApi() as api:
        yield api


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "staging"  # under the test settings' output root


def _connect(cluster, staging: Path, **options):  # type: ignore[no-untyped-def]
    return connect(f"k8s:{NS}", image=IMAGE, staging=str(staging), api_client=cluster.api_client(), **options)


def _play_pod(job: dict, settings) -> int:  # type: ignore[no-untyped-def]
    """Run what the Job's container would run; return its exit code."""
    from talkgen.k8s.runner import execute_shard

    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[3::2], args[4::2], strict=True))
    assert args[:3] == ["talkgen", "k8s", "run"] and flags["--shards"] == "1"
    return execute_shard(flags["--requests"], flags["--output"], 0, 1, settings, echo=lambda _: None).exit_code


def test_submit_run_and_fetch_a_video(cluster, staging: Path, settings, media_dir: Path,  # type: ignore[no-untyped-def]
                                      tmp_path: Path) -> None:
    with _connect(cluster, staging, gpus=0) as client:
        job_id = client.submit(talk_request(media_dir, seed=2))
        job = cluster.jobs[(NS, job_id)]
        assert job_id.startswith("talkgen-") and job["metadata"]["namespace"] == NS
        notes = job["metadata"]["annotations"]
        assert notes["talkgen.dev/requests"] == f"{staging}/{job_id}/requests.jsonl"
        assert notes["talkgen.dev/output"] == f"{staging}/{job_id}/out/"
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 1
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
        assert client.status(job_id).status == "IN_QUEUE"
        cluster.set_status(NS, job_id, {"active": 1, "startTime": "2026-01-01T00:00:01Z"})
        assert client.status(job_id).status == "IN_PROGRESS"
        assert _play_pod(job, settings) == 0
        assert client.status(job_id).status == "COMPLETED"  # the record counts before the Job says so
        cluster.set_status(NS, job_id, {"active": 0, "succeeded": 1, "completedIndexes": "0",
                                        "conditions": [{"type": "Complete", "status": "True"}]})
        response = client.wait(job_id, timeout=10, poll_s=0.05)
        saved = client.save(response, tmp_path / "k8s.mp4")
    assert response["seed"] == 2 and response["frames"] == 50
    assert decode(saved).count == 50


def test_a_bad_request_fails_with_its_code(cluster, staging: Path, settings, media_dir: Path) -> None:  # type: ignore[no-untyped-def]
    request = talk_request(media_dir)
    del request["wav_path"]
    with _connect(cluster, staging) as client:
        job_id = client.submit(request, validate=False)
        assert _play_pod(cluster.jobs[(NS, job_id)], settings) == 42  # EXIT_FINAL_FAILURE
        with pytest.raises(MissingMedia, match="needs speaker 1's audio") as caught:
            client.wait(job_id, timeout=10, poll_s=0.05)
    assert caught.value.retryable is False


def test_job_endings_without_a_record(cluster, staging: Path, media_dir: Path) -> None:  # type: ignore[no-untyped-def]
    with _connect(cluster, staging) as client:
        failed = client.submit(talk_request(media_dir))
        cluster.set_status(NS, failed, {"failed": 3, "failedIndexes": "0", "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the "
             "specified backoff limit"}]})
        with pytest.raises(OutputFailed, match=f"kubectl logs job/{failed} -n {NS}"):
            client.wait(failed, poll_s=0.05)
        late = client.submit(talk_request(media_dir))
        cluster.set_status(NS, late, {"conditions": [{"type": "Failed", "status": "True",
                                                      "reason": "DeadlineExceeded"}]})
        assert client.status(late).status == "TIMED_OUT"
        with pytest.raises(Timeout):
            client.wait(late, poll_s=0.05)


def test_cancel_deletes_the_job(cluster, staging: Path, media_dir: Path) -> None:  # type: ignore[no-untyped-def]
    with _connect(cluster, staging) as client:
        job_id = client.submit(talk_request(media_dir))
        job = client.cancel(job_id)
        assert job.status == "CANCELLED" and (NS, job_id) not in cluster.jobs
        assert cluster.calls[-1] == ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{job_id}",
                                     {"propagationPolicy": ["Background"]})
        with pytest.raises(InvalidRequest, match=f"No Job '{job_id}' in namespace 'team-a'"):
            client.cancel(job_id)
        gone = client.status(job_id)  # the staging prefix still answers
    assert gone.status == "FAILED" and "is gone from namespace team-a" in gone.error["error"]


def test_settings_and_refusals(cluster, staging: Path, media_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TALKGEN_K8S_IMAGE", raising=False)
    monkeypatch.delenv("TALKGEN_K8S_STAGING", raising=False)
    api = cluster.api_client()
    with connect(f"k8s:{NS}", api_client=api) as client:
        with pytest.raises(InvalidConfig, match="TALKGEN_K8S_IMAGE"):
            client.submit(talk_request(media_dir))
        with pytest.raises(InvalidRequest, match="give the staging prefix"):
            client.status("talkgen-0123")
        with pytest.raises(InvalidRequest, match="is not a Job name"):
            client.status("Bad_Name")
    monkeypatch.setenv("TALKGEN_K8S_IMAGE", IMAGE)
    with connect(f"k8s:{NS}", api_client=cluster.api_client()) as client, \
            pytest.raises(InvalidConfig, match="TALKGEN_K8S_STAGING"):
        client.submit(talk_request(media_dir))
    with _connect(cluster, staging, gpus=-1) as client, pytest.raises(InvalidRequest, match="--gpus"):
        client.submit(talk_request(media_dir))
    cluster.fail_next = (403, "Forbidden")
    with _connect(cluster, staging) as client, pytest.raises(InvalidConfig, match=r"create/get/delete on jobs\.batch"):
        client.submit(talk_request(media_dir))


def test_commands_use_the_kubeconfig(cluster, staging: Path, settings, media_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from talkgen.client.command import result, status, submit

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": cluster.host}}],
        "users": [{"name": "me", "user": {"token": "t0k"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "me", "namespace": NS}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("TALKGEN_TARGET", f"k8s:{NS}")
    monkeypatch.setenv("TALKGEN_K8S_STAGING", str(staging))
    request = tmp_path / "r.json"
    request.write_text(json.dumps(talk_request(media_dir, seed=8)))
    runner = CliRunner()
    out = runner.invoke(submit, [str(request), "-O", f"image={IMAGE}", "-O", "gpus=0"])
    assert out.exit_code == 0, out.output
    job_id = out.output.strip()
    assert cluster.jobs[(NS, job_id)]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    shown = runner.invoke(status, [job_id])
    assert shown.exit_code == 0 and shown.output.strip() == f"{job_id}: IN_QUEUE"
    assert _play_pod(cluster.jobs[(NS, job_id)], settings) == 0
    fetched = runner.invoke(result, [job_id, "-o", str(tmp_path / "cli.mp4"), "--json"])
    assert fetched.exit_code == 0, fetched.output
    assert json.loads(fetched.output)["output"]["seed"] == 8 and decode(tmp_path / "cli.mp4").count == 50


def test_no_kubeconfig_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with connect(f"k8s:{NS}") as client, pytest.raises(InvalidConfig, match="set KUBECONFIG"):
        client.cancel("talkgen-0123")


def test_staging_on_s3(cluster, settings, media_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("s3fs")
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        s3.filesystem().mkdir("k8s-staging")
        options = {"s3": s3.storage_options}
        with connect(f"k8s:{NS}", image=IMAGE, staging="s3://k8s-staging/jobs", storage_options=options,
                     api_client=cluster.api_client()) as client:
            job_id = client.submit(talk_request(media_dir, seed=6))
            assert s3.filesystem().cat(f"k8s-staging/jobs/{job_id}/requests.jsonl").startswith(b'{"image_path"')
            pod_settings = settings.model_copy(update={"storage_options": options})
            assert _play_pod(cluster.jobs[(NS, job_id)], pod_settings) == 0
            response = client.wait(job_id, timeout=10, poll_s=0.05)
            assert response["video_url"] == f"s3://k8s-staging/jobs/{job_id}/out/line-000001.mp4"
            saved = client.save({k: v for k, v in response.items() if k != "presigned_url"}, tmp_path / "s3.mp4")
    assert decode(saved).count == 50
