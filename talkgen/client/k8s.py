"""Kubernetes: one request as a one-line batch run by a talkgen Job (``talkgen k8s run``) in a namespace.

submit writes ``<staging>/<job>/requests.jsonl`` and creates Job ``<job>`` (`talkgen.k8s.render.render_job`,
one shard, checked and created by `talkgen.k8s.jobs.submit`) whose output prefix is ``<staging>/<job>/out/``;
status is `talkgen.k8s.jobs.batch_status` (the Job, found from its annotations, and the request's status
record); cancel deletes the Job. The staging prefix must be storage both this machine and the pods can reach
(``s3://bucket/talkgen-jobs/``…). Once the Job is gone (``ttlSecondsAfterFinished``) its record is still found
through the staging prefix.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from talkgen.client.status import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    IN_QUEUE,
    TIMED_OUT,
    JobStatus,
    default_error,
)
from talkgen.errors import FetchFailed, InvalidConfig, InvalidRequest, OutputFailed, TalkgenError, shown

IMAGE_ENV = "TALKGEN_K8S_IMAGE"
STAGING_ENV = "TALKGEN_K8S_STAGING"
NAME_PREFIX = "talkgen-"
_OUTPUT = "out/"
_REQUESTS = "requests.jsonl"


class K8sPlatform:
    """Jobs in ``namespace`` of the current kubeconfig (in-cluster config inside a pod).

    ``image`` (or $TALKGEN_K8S_IMAGE) and ``staging`` (or $TALKGEN_K8S_STAGING) are needed to submit;
    ``storage_options`` reach the staging prefix (default: TALKGEN_STORAGE_OPTIONS / the usual env);
    ``api_client`` is a configured ``kubernetes.client.ApiClient`` (default: the kubeconfig); any other
    option goes to `talkgen.k8s.options.RenderOptions` (``gpus``, ``models_pvc``, ``env_secrets``, …).
    """

    def __init__(self, namespace: str, *, image: str | None = None, staging: str | None = None,
                 storage_options: dict[str, Any] | None = None, api_client: Any = None, **render: Any) -> None:
        self.namespace = namespace
        self.name = f"Kubernetes namespace {namespace}"
        self.image = image or os.environ.get(IMAGE_ENV, "").strip() or None
        self.staging = staging or os.environ.get(STAGING_ENV, "").strip() or None
        self.storage_options = storage_options
        self.render = render
        self._api_client = api_client
        self._owned = api_client is None

    def close(self) -> None:
        if self._owned and self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    def submit(self, request: dict[str, Any]) -> str:
        from talkgen.k8s import jobs
        from talkgen.k8s.options import RenderOptions
        from talkgen.k8s.render import render_job

        if not self.image:
            raise InvalidConfig(f"Say which talkgen image the Job runs: -O image=… or {IMAGE_ENV}.", field="image")
        if not self.staging:
            raise InvalidConfig(f"Say where to stage the request and its result, a storage URL prefix the pods "
                                f"and this machine can both reach: -O staging=s3://bucket/talkgen-jobs/ or "
                                f"{STAGING_ENV}.", field="staging")
        name = NAME_PREFIX + uuid.uuid4().hex[:12]
        requests_url, output = self._paths(name)
        opts = RenderOptions.parse(**{"gpus": 1, **self.render, "name": name, "namespace": self.namespace,
                                      "image": self.image, "requests": requests_url, "output": output,
                                      "parallelism": 1, "shards": 1})
        job = render_job(opts)
        _write(requests_url, json.dumps(request, ensure_ascii=False) + "\n", self.storage_options)
        jobs.submit(job, self.namespace, api_client=self._client())
        return name

    def status(self, job_id: str) -> JobStatus:
        from talkgen.k8s import jobs

        _check_name(job_id)
        try:
            state = jobs.batch_status(job_id, self.namespace, api_client=self._client(),
                                      storage_options=self.storage_options)
        except InvalidRequest as exc:
            if exc.field == "name" and self.staging:  # HTTP 404: the Job is gone, its staging prefix is not
                return self._from_staging(job_id)
            if exc.field == "name":
                raise InvalidRequest(f"{exc.message} A finished Job is deleted after its TTL: give the staging "
                                     f"prefix it was submitted with (-O staging=… or {STAGING_ENV}) to read its "
                                     "result.", field="job_id") from None
            raise
        running = IN_PROGRESS if state.active else IN_QUEUE
        deadline = any(c.get("reason") == "DeadlineExceeded" and c.get("status") == "True" for c in state.conditions)
        if state.items is None:
            if not state.finished:
                return JobStatus(job_id, running)
            raise FetchFailed(f"Job {job_id} ended ({state.outcome}) but its result cannot be read: "
                              f"{state.items_error}")
        if len(state.items) != 1:
            raise OutputFailed(f"Job {job_id} has {len(state.items)} requests; the client follows one-request Jobs: "
                               "use `talkgen k8s status` for a batch.")
        item = state.items[0]
        response = (item.record or {}).get("response")
        response = response if isinstance(response, dict) else {}
        if item.status == "succeeded":
            return JobStatus(job_id, COMPLETED, output=response)
        if item.status == "failed":
            if response.get("retryable") is True and not state.finished:
                return JobStatus(job_id, IN_PROGRESS)  # the Job retries the index
            return JobStatus(job_id, FAILED, error=response or None)
        if item.status == "invalid":
            return JobStatus(job_id, FAILED, error=InvalidRequest(str(item.error)).to_dict())
        if item.status == "pending" and not deadline:
            return JobStatus(job_id, running)
        if deadline:
            return JobStatus(job_id, TIMED_OUT, error=default_error(job_id, TIMED_OUT))
        reasons = "; ".join(f"{c.get('type')}: {c.get('reason') or ''} {c.get('message') or ''}".strip()
                            for c in state.conditions if c.get("status") == "True") or state.outcome
        return JobStatus(job_id, FAILED, error=OutputFailed(
            f"Job {job_id} ended ({reasons}) without a result record under {shown(state.output)}: see `kubectl "
            f"logs job/{job_id} -n {self.namespace}`.").to_dict())

    def cancel(self, job_id: str) -> JobStatus:
        from talkgen.k8s import jobs

        _check_name(job_id)
        jobs.delete(job_id, self.namespace, api_client=self._client())
        return JobStatus(job_id, CANCELLED, error=default_error(job_id, CANCELLED))

    def _paths(self, name: str) -> tuple[str, str]:
        base = f"{(self.staging or '').rstrip('/')}/{name}/"
        return base + _REQUESTS, base + _OUTPUT

    def _from_staging(self, job_id: str) -> JobStatus:
        """A deleted Job's request and record, from the staging prefix."""
        from talkgen.batch.records import SUCCEEDED, read_record
        from talkgen.batch.requests import read_requests

        requests_url, output = self._paths(job_id)
        items = read_requests(requests_url, self.storage_options)
        record = read_record(output, items[0].key, self.storage_options) if len(items) == 1 else None
        if record is None:
            return JobStatus(job_id, FAILED, error=OutputFailed(
                f"Job {job_id} is gone from namespace {self.namespace} and left no result record under "
                f"{shown(output)} (cancelled, or deleted before it finished).").to_dict())
        response = record.get("response") if isinstance(record.get("response"), dict) else {}
        if record.get("status") == SUCCEEDED:
            return JobStatus(job_id, COMPLETED, output=response)
        return JobStatus(job_id, FAILED, error=response or None)

    def _client(self) -> Any:
        """The given ApiClient, else one from the in-cluster config or the kubeconfig (kept until close)."""
        if self._api_client is None:
            from talkgen.k8s.jobs import load_api_client

            self._api_client = load_api_client()
        return self._api_client


def _check_name(job_id: str) -> None:
    from talkgen.client.target import _NAMESPACE  # a Job name is a DNS-1123 label here too

    if not isinstance(job_id, str) or not _NAMESPACE.match(job_id):
        raise InvalidRequest(f"{shown(job_id)} is not a Job name (lowercase letters, digits and -): use the id "
                             "`talkgen submit` printed.", field="job_id")


def _write(url: str, text: str, storage_options: dict[str, Any] | None) -> None:
    import fsspec

    from talkgen.batch.storage import options_for

    try:
        fs, path = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
        if "://" not in url or url.startswith("file://"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fs.pipe_file(path, text.encode())
    except TalkgenError:
        raise
    except Exception as exc:  # storage drivers raise their own types
        raise OutputFailed(f"Cannot write the request to {shown(url)}: {type(exc).__name__}: {str(exc)[:200]}. "
                           "Check the staging prefix and its credentials.") from None
