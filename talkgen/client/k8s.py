"""Kubernetes: one request as a one-line batch run by a talkgen Job (``talkgen k8s run``) in a namespace.

submit writes ``<staging>/<job>/requests.jsonl`` and creates Job ``<job>`` (rendered by
`talkgen.k8s.render.render_job`, one shard) whose output prefix is ``<staging>/<job>/out/``; status reads
the Job and the request's status record (``talkgen.batch.records``); cancel deletes the Job. The staging
prefix must be storage both this machine and the pods can reach (``s3://bucket/talkgen-jobs/``…).
The Job's annotations name its requests and output, so status works without the staging option; after
the Job is gone (``ttlSecondsAfterFinished``) the record is still found through the staging prefix.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from talkgen.client.status import COMPLETED, FAILED, IN_PROGRESS, IN_QUEUE, TIMED_OUT, JobStatus, default_error
from talkgen.errors import (
    EngineUnavailable,
    InvalidConfig,
    InvalidRequest,
    OutputFailed,
    TalkgenError,
    shown,
)

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

    def close(self) -> None:
        if self._api_client is not None and hasattr(self._api_client, "close"):
            self._api_client.close()

    def submit(self, request: dict[str, Any]) -> str:
        from kubernetes.client import BatchV1Api

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
        _write(requests_url, json.dumps(request, ensure_ascii=False) + "\n", self.storage_options)
        opts = RenderOptions.parse(**{"gpus": 1, **self.render, "name": name, "namespace": self.namespace,
                                      "image": self.image, "requests": requests_url, "output": output,
                                      "parallelism": 1, "shards": 1})
        try:
            self._call(lambda: BatchV1Api(self._client()).create_namespaced_job(self.namespace, render_job(opts)), name)
        except _Gone:
            raise InvalidConfig(f"The cluster has no namespace {self.namespace} (HTTP 404 creating the Job): create it "
                                "or target another (k8s:<namespace>).", field="target") from None
        return name

    def status(self, job_id: str) -> JobStatus:
        from talkgen.batch.records import SUCCEEDED, read_record
        from talkgen.batch.requests import read_requests

        job = self._read_job(job_id)
        requests_url, output = self._from_job(job, job_id)
        items = read_requests(requests_url, self.storage_options)
        if len(items) != 1:
            raise OutputFailed(f"Job {job_id} has {len(items)} requests in {shown(requests_url)}; the client follows "
                               "one-request Jobs only: use `talkgen k8s status` for a batch.")
        item = items[0]
        if item.error is not None:
            return JobStatus(job_id, FAILED, error=item.error.to_dict())
        record = read_record(output, item.key, self.storage_options)
        state = _job_state(job)
        if record is not None:
            response = record.get("response") if isinstance(record.get("response"), dict) else {}
            if record.get("status") == SUCCEEDED:
                return JobStatus(job_id, COMPLETED, output=response)
            if response.get("retryable") is not True or state in ("finished", "failed", "gone"):
                return JobStatus(job_id, FAILED, error=response or None)
            return JobStatus(job_id, IN_PROGRESS)  # a retryable failure: the Job retries the index
        if state == "active":
            return JobStatus(job_id, IN_PROGRESS)
        if state == "pending":
            return JobStatus(job_id, IN_QUEUE)
        if state == "deadline":
            return JobStatus(job_id, TIMED_OUT, error=default_error(job_id, TIMED_OUT))
        reason = _failure(job)
        return JobStatus(job_id, FAILED, error=OutputFailed(
            f"Job {job_id} ended ({reason}) without a result record under {shown(output)}: see `kubectl logs "
            f"job/{job_id} -n {self.namespace}`.").to_dict())

    def cancel(self, job_id: str) -> JobStatus:
        from kubernetes.client import BatchV1Api

        _check_name(job_id)
        self._call(lambda: BatchV1Api(self._client()).delete_namespaced_job(
            job_id, self.namespace, propagation_policy="Background"), job_id)
        return JobStatus(job_id, "CANCELLED", error=default_error(job_id, "CANCELLED"))

    def _paths(self, name: str) -> tuple[str, str]:
        base = f"{(self.staging or '').rstrip('/')}/{name}/"
        return base + _REQUESTS, base + _OUTPUT

    def _from_job(self, job: Any, job_id: str) -> tuple[str, str]:
        """(requests URL, output prefix) from the Job's annotations, else from the staging prefix."""
        from talkgen.k8s.render import ANNOTATION_OUTPUT, ANNOTATION_REQUESTS

        notes = (job.metadata.annotations or {}) if job is not None else {}
        if notes.get(ANNOTATION_REQUESTS) and notes.get(ANNOTATION_OUTPUT):
            return notes[ANNOTATION_REQUESTS], notes[ANNOTATION_OUTPUT]
        if job is None and self.staging:
            return self._paths(job_id)
        if job is None:
            raise InvalidRequest(f"No Job {job_id} in namespace {self.namespace} (a finished Job is deleted after its "
                                 f"TTL): give the staging prefix it was submitted with (-O staging=… or "
                                 f"{STAGING_ENV}) to read its result.", field="job_id")
        raise InvalidRequest(f"Job {job_id} was not made by talkgen (no {ANNOTATION_REQUESTS} annotation).",
                             field="job_id")

    def _read_job(self, job_id: str) -> Any:
        """The Job, or None when it is gone."""
        from kubernetes.client import BatchV1Api

        _check_name(job_id)
        try:
            return self._call(lambda: BatchV1Api(self._client()).read_namespaced_job(job_id, self.namespace), job_id)
        except _Gone:
            return None

    def _client(self) -> Any:
        """The given ApiClient, else one for the in-cluster config or $KUBECONFIG (~/.kube/config)."""
        if self._api_client is None:
            from kubernetes import client, config

            settings = client.Configuration()
            try:
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=settings)
                else:
                    config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None,
                                            client_configuration=settings)
            except (config.ConfigException, OSError, TypeError, ValueError) as exc:
                raise InvalidConfig(f"No usable Kubernetes configuration ({str(exc)[:200].rstrip('.')}): set "
                                    "KUBECONFIG (or ~/.kube/config) to reach the cluster, or run inside a pod.") \
                    from None
            self._api_client = client.ApiClient(settings)
        return self._api_client

    def _call(self, fn: Any, job_id: str) -> Any:
        """``fn()`` with the API's errors as talkgen errors (404 → `_Gone`)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 404:
                raise _Gone(job_id) from None
            if exc.status in (401, 403):
                raise InvalidConfig(f"The cluster refused the call (HTTP {exc.status}, {exc.reason}): the kubeconfig's "
                                    f"user needs create/get/delete on jobs.batch in namespace {self.namespace}.") \
                    from None
            if exc.status == 409:
                raise InvalidRequest(f"Job {job_id} already exists in namespace {self.namespace}.") from None
            if exc.status and exc.status < 500:
                raise InvalidRequest(f"The cluster refused the Job (HTTP {exc.status}): {_api_message(exc)}") \
                    from None
            raise EngineUnavailable(f"The cluster's API failed (HTTP {exc.status}): {_api_message(exc)}") from None
        except HTTPError as exc:
            raise EngineUnavailable(f"Cannot reach the cluster's API: {type(exc).__name__}: {str(exc)[:200]}.") \
                from None


class _Gone(InvalidRequest):
    """The Job does not exist (HTTP 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No Job {job_id} in this namespace: check the id and the namespace.", field="job_id")


def _job_state(job: Any) -> str:
    """``gone``, ``finished``, ``failed``, ``deadline``, ``active`` or ``pending`` for a V1Job (or None)."""
    if job is None:
        return "gone"
    status = job.status
    for condition in (status.conditions if status is not None else None) or []:
        if condition.status != "True":
            continue
        if condition.type in ("Complete", "SuccessCriteriaMet"):
            return "finished"
        if condition.type in ("Failed", "FailureTarget"):
            return "deadline" if condition.reason == "DeadlineExceeded" else "failed"
    if status is not None and (status.active or status.succeeded or status.failed):
        return "active"
    return "pending"


def _failure(job: Any) -> str:
    if job is None:
        return "it was deleted"
    for condition in (job.status.conditions if job.status is not None else None) or []:
        if condition.status == "True" and condition.type in ("Failed", "FailureTarget", "Complete"):
            return f"{condition.type}: {condition.reason or ''} {condition.message or ''}".strip()
    return "no condition"


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", ""))[:300] or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)[:300]


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
