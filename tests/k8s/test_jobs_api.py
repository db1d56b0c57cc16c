"""submit / batch_status / delete (and the CLI commands) against a loopback stub of the batch/v1 Jobs API.

The stub is a real HTTP server on 127.0.0.1 (tests/support/k8s_api.py); the kubernetes client talks to
it through an ApiClient, or through a kubeconfig file for the CLI. Records are real files written in the
layout of talkgen.batch.records, in a local folder and (one test) on moto S3.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from talkgen.errors import EngineUnavailable, InvalidConfig, InvalidRequest
from talkgen.k8s import jobs, render_cli
from talkgen.k8s.options import RenderOptions
from talkgen.k8s.render import render_job, to_manifest
from tests.support.k8s_api import FakeJobsApi

NS = "talkgen"


@pytest.fixture
def api() -> Iterator[FakeJobsApi]:
    with FakeJobsApi() as server:
        yield server


@pytest.fixture
def client(api: FakeJobsApi) -> Iterator[Any]:
    c = api.api_client()
    yield c
    c.close()


def _batch(tmp_path: Path, lines: list[str], shards: int, **flags: Any) -> RenderOptions:
    requests = tmp_path / "batch.jsonl"
    requests.write_text("".join(line + "\n" for line in lines))
    (tmp_path / "out").mkdir(exist_ok=True)
    return RenderOptions.parse(requests=str(requests), output=str(tmp_path / "out") + "/", image="talkgen:1",
                               gpus=1, parallelism=min(shards, 4), shards=shards, **flags)


def _record(prefix: Path, key: str, line: int, ok: bool) -> None:
    response = {"video_url": f"s3://b/{key}.mp4"} if ok else {"error": "The audio is too long.",
                                                             "error_code": "too_long", "retryable": False}
    (prefix / f"{key}.json").write_text(json.dumps({"key": key, "line": line, "status": "succeeded" if ok else
                                                    "failed", "response": response, "finished_at": "2026-12-01"}))


def test_index_ranges() -> None:
    assert jobs.parse_indexes("0-6,8") == frozenset({0, 1, 2, 3, 4, 5, 6, 8})
    assert jobs.parse_indexes("7") == frozenset({7})
    assert jobs.parse_indexes(None) == jobs.parse_indexes("") == frozenset()
    assert jobs.format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    for bad in ("a", "1-", "3-1", "1,,2"):
        with pytest.raises(ValueError):
            jobs.parse_indexes(bad)


def test_submit_returns_the_created_job(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    opts = _batch(tmp_path, ['{"job_id": "a"}'], 1)
    created = jobs.submit(render_job(opts), NS, client)
    assert type(created).__name__ == "V1Job"
    assert created.metadata.uid and created.metadata.namespace == NS
    assert created.spec.completion_mode == "Indexed" and created.spec.pod_failure_policy.rules[1].action == "FailIndex"
    stored = api.jobs[(NS, opts.job_name)]
    sent = to_manifest(render_job(opts))
    assert stored["spec"] == sent["spec"]  # camelCase, exactly the rendered manifest
    assert api.calls[-1][:2] == ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")


def test_submit_a_manifest_dict_and_its_namespace(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    data = to_manifest(render_job(_batch(tmp_path, ["{}"], 1, namespace="media")))
    assert jobs.submit(data, None, client).metadata.namespace == "media"
    with pytest.raises(InvalidRequest, match="namespace 'media' but --namespace is 'other'"):
        jobs.submit(data, "other", client)


def test_an_invalid_job_is_never_sent(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    data = to_manifest(render_job(_batch(tmp_path, ["{}"], 1)))
    data["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(InvalidRequest, match=r"spec\.template\.spec\.restartPolicy"):
        jobs.submit(data, NS, client)
    with pytest.raises(InvalidRequest, match="Only a Job"):
        jobs.submit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, NS, client)
    assert api.calls == []


def test_api_errors_become_talkgen_errors(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    job = render_job(_batch(tmp_path, ["{}"], 1))
    jobs.submit(job, NS, client)
    with pytest.raises(InvalidRequest, match="already exists"):
        jobs.submit(job, NS, client)
    api.fail_next = (403, "Forbidden")
    with pytest.raises(InvalidConfig, match=r"create/get/delete on jobs\.batch"):
        jobs.read_job("x", NS, client)
    api.fail_next = (503, "ServiceUnavailable")
    with pytest.raises(EngineUnavailable) as caught:
        jobs.read_job("x", NS, client)
    assert caught.value.retryable
    with pytest.raises(InvalidRequest, match="No Job 'nope' in namespace 'talkgen'"):
        jobs.batch_status("nope", NS, client)


def test_unreachable_server_is_a_config_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    from kubernetes import client as k

    cfg = k.Configuration()
    cfg.host, cfg.retries = f"http://127.0.0.1:{port}", 0
    with pytest.raises(InvalidConfig, match=f"Cannot reach the Kubernetes API server at http://127.0.0.1:{port}"):
        jobs.read_job("x", NS, k.ApiClient(cfg))


def test_status_reads_indexes_and_records(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    lines = [json.dumps({"job_id": f"r{i}"}) for i in range(9)]
    lines.insert(4, "not json")  # line 5: an item with an error, at position 4
    opts = _batch(tmp_path, lines, 8, max_failed_indexes=2)
    out = tmp_path / "out"
    name = jobs.submit(render_job(opts), NS, client).metadata.name
    # 10 items at positions 0-9 (the bad line is position 4); index = position % 8, so r6 (position 7) is index 7
    for key, line in (("r0", 1), ("r1", 2), ("r2", 3)):
        _record(out, key, line, ok=True)
    _record(out, "r6", 8, ok=False)  # position 7: index 7
    api.set_status(NS, name, {"completedIndexes": "0-6", "failedIndexes": "7", "succeeded": 7, "failed": 3,
                              "active": 0, "conditions": [{"type": "Failed", "status": "True",
                                                           "reason": "MaxFailedIndexesExceeded", "message": "x",
                                                           "lastTransitionTime": "2026-12-01T00:00:00Z"}]})
    state = jobs.batch_status(name, NS, client)
    assert state.completed_indexes == frozenset(range(7)) and state.failed_indexes == frozenset({7})
    assert (state.succeeded, state.failed, state.outcome, state.finished) == (7, 3, "Failed", True)
    assert (state.requests, state.output, state.shards) == (opts.requests, opts.output, 8)
    by_key = {item.key: item for item in state.items or []}
    assert len(by_key) == 10
    assert by_key["r0"].status == "succeeded" and by_key["r0"].index == 0
    assert by_key["r6"].status == "failed" and by_key["r6"].error == "The audio is too long."
    assert by_key["r6"].index == 7
    assert by_key["line-000005"].status == "invalid" and "Line 5" in (by_key["line-000005"].error or "")
    assert by_key["r3"].status == "missing"  # the Job finished without its record
    assert state.counts() == {"succeeded": 3, "failed": 1, "invalid": 1, "missing": 5}
    data = state.to_dict()
    assert (data["completed_indexes"], data["failed_indexes"], data["finished"]) == ("0-6", "7", True)
    json.dumps(data)


def test_status_of_a_running_job_says_pending(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    opts = _batch(tmp_path, ['{"job_id": "a"}', '{"job_id": "b"}'], 2)
    name = jobs.submit(render_job(opts), NS, client).metadata.name
    api.set_status(NS, name, {"active": 2, "ready": 1})
    state = jobs.batch_status(name, NS, client)
    assert state.outcome == "Running" and not state.finished and state.active == 2
    assert [i.status for i in state.items or []] == ["pending", "pending"]
    assert jobs.batch_status(name, NS, client, records=False).items is None


def test_status_without_readable_records_still_reports_the_job(api: FakeJobsApi, client: Any,
                                                                tmp_path: Path) -> None:
    opts = _batch(tmp_path, ["{}"], 1)
    name = jobs.submit(render_job(opts), NS, client).metadata.name
    Path(opts.requests).unlink()
    state = jobs.batch_status(name, NS, client)
    assert state.items is None and "does not exist" in (state.items_error or "")
    api.jobs[(NS, name)]["metadata"]["annotations"] = {}
    assert "annotations" in (jobs.batch_status(name, NS, client).items_error or "")


def test_delete_uses_background_propagation(api: FakeJobsApi, client: Any, tmp_path: Path) -> None:
    name = jobs.submit(render_job(_batch(tmp_path, ["{}"], 1)), NS, client).metadata.name
    jobs.delete(name, NS, client)
    method, path, query = api.calls[-1]
    assert (method, path, query["propagationPolicy"]) == ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{name}",
                                                          ["Background"])
    assert (NS, name) not in api.jobs
    with pytest.raises(InvalidRequest, match="No Job"):
        jobs.delete(name, NS, client)


def test_status_reads_records_on_s3(api: FakeJobsApi, client: Any) -> None:
    pytest.importorskip("s3fs")
    from tests.support.s3 import MotoS3

    with MotoS3() as s3:
        fs = s3.filesystem()
        fs.mkdir("talkgen-k8s")
        fs.pipe("talkgen-k8s/batch.jsonl", b'{"job_id": "a"}\n{"job_id": "b"}\n')
        fs.pipe("talkgen-k8s/out/a.json", json.dumps({"key": "a", "line": 1, "status": "succeeded",
                                                      "response": {}, "finished_at": "t"}).encode())
        opts = RenderOptions.parse(requests="s3://talkgen-k8s/batch.jsonl", output="s3://talkgen-k8s/out/",
                                   image="talkgen:1", parallelism=2)
        name = jobs.submit(render_job(opts), NS, client).metadata.name
        api.set_status(NS, name, {"completedIndexes": "0", "active": 1})
        state = jobs.batch_status(name, NS, client, storage_options={"s3": s3.storage_options})
    assert [(i.key, i.index, i.status) for i in state.items or []] == [("a", 0, "succeeded"), ("b", 1, "pending")]


# --- the CLI, through a kubeconfig that points at the stub ---------------------------------------------------


@pytest.fixture
def kubeconfig(api: FakeJobsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": api.host}}],
        "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "me", "namespace": NS}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


def test_cli_submit_status_delete(api: FakeJobsApi, kubeconfig: Path, tmp_path: Path) -> None:
    opts = _batch(tmp_path, ['{"job_id": "a"}', "oops"], 2)
    _record(tmp_path / "out", "a", 1, ok=True)
    flags = ["--requests", opts.requests, "--output", opts.output, "--image", "talkgen:1", "--parallelism", "2"]
    result = CliRunner().invoke(render_cli.submit, flags, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"job.batch/{opts.job_name} created in namespace {NS} (uid " in result.stdout  # the context's namespace
    api.set_status(NS, opts.job_name, {"completedIndexes": "0", "failedIndexes": "1", "succeeded": 1, "failed": 1})
    result = CliRunner().invoke(render_cli.status, [opts.job_name], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "indexes: 2 shards; completed 0; failed 1" in result.stdout
    assert "requests: 2 (invalid 1, succeeded 1)" in result.stdout
    assert "line      1 a [index 0] succeeded: s3://b/a.mp4" in result.stdout
    assert "line      2 line-000002 [index 1] invalid: Line 2" in result.stdout
    as_json = json.loads(CliRunner().invoke(render_cli.status, [opts.job_name, "--json"]).stdout)
    assert as_json["failed_indexes"] == "1" and as_json["counts"] == {"succeeded": 1, "invalid": 1}
    result = CliRunner().invoke(render_cli.delete, [opts.job_name, "--namespace", NS], catch_exceptions=False)
    assert result.exit_code == 0 and f"job.batch/{opts.job_name} deleted from {NS}" in result.stdout
    missing = CliRunner().invoke(render_cli.status, [opts.job_name])
    assert missing.exit_code == 2 and "No Job" in missing.stderr


def test_cli_submit_from_a_file(api: FakeJobsApi, kubeconfig: Path, tmp_path: Path) -> None:
    text = yaml.safe_dump(to_manifest(render_job(_batch(tmp_path, ["{}"], 1, name="from-file"))))
    path = tmp_path / "job.yaml"
    path.write_text(text)
    result = CliRunner().invoke(render_cli.submit, ["-f", str(path), "--namespace", "media", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["namespace"] == "media" and (("media", "from-file") in api.jobs)
    both = CliRunner().invoke(render_cli.submit, ["-f", str(path), "--gpus", "2"])
    assert both.exit_code == 2 and "leave out --gpus" in both.stderr


def test_cli_without_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(render_cli.status, ["x"])
    assert result.exit_code == 1
    assert "error (invalid_config): No usable Kubernetes configuration" in result.stderr
    assert "KUBECONFIG" in result.stderr
