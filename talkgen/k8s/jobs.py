"""Submit, inspect and delete batch Jobs with the ``kubernetes`` client (current kubeconfig, or in-cluster).

`batch_status` needs only the Job: its annotations (`render.ANNOTATION_*`) name the requests file, the
output prefix and the shard count, so the per-request status JSONs are found from there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from talkgen.errors import EngineUnavailable, InvalidConfig, InvalidRequest, TalkgenError, shown
from talkgen.k8s.render import ANNOTATION_OUTPUT, ANNOTATION_REQUESTS, ANNOTATION_SHARDS

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_RANGES = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
READERS = 16  # status JSONs read at once


def parse_indexes(text: str | None) -> frozenset[int]:
    """``"0-6,8"`` (a Job's completedIndexes / failedIndexes) as ``{0, ..., 6, 8}``; ValueError if malformed."""
    if not text:
        return frozenset()
    if not _RANGES.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text[:80]!r} is not a list of index ranges such as 0-6,8")
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(f"{part!r} is a range that runs backwards")
        out.update(range(first, last + 1))
    return frozenset(out)


def format_indexes(indexes: frozenset[int] | set[int]) -> str:
    """The inverse of `parse_indexes`: ``{0, 1, 2, 5}`` → ``"0-2,5"``."""
    parts, ordered = [], sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class RequestStatus:
    """One request of the batch: ``status`` is the record's (succeeded/failed), else ``invalid`` (a bad line,
    no record yet), ``pending`` (not done, its index still may run) or ``missing`` (its index or the Job
    ended without a record)."""

    key: str
    line: int
    index: int
    status: str
    record: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class BatchStatus:
    """A batch Job's state from the API server, and each request's from its status JSON."""

    name: str
    namespace: str
    uid: str | None
    requests: str | None
    output: str | None
    shards: int | None
    completed_indexes: frozenset[int]
    failed_indexes: frozenset[int]
    active: int
    ready: int
    succeeded: int
    failed: int
    outcome: str  # Complete | Failed | Suspended | Running
    conditions: list[dict[str, Any]] = field(default_factory=list)
    items: list[RequestStatus] | None = None
    items_error: str | None = None

    @property
    def finished(self) -> bool:
        return self.outcome in ("Complete", "Failed")

    def counts(self) -> dict[str, int]:
        """How many requests are in each status."""
        out: dict[str, int] = {}
        for item in self.items or []:
            out[item.status] = out.get(item.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["completed_indexes"] = format_indexes(self.completed_indexes)
        data["failed_indexes"] = format_indexes(self.failed_indexes)
        data["finished"] = self.finished
        data["counts"] = self.counts()
        return data


def load_api_client(context: str | None = None) -> Any:
    """A `kubernetes.client.ApiClient`: in-cluster config inside a pod, else the kubeconfig (``KUBECONFIG`` or
    ``~/.kube/config``, current context unless ``context``). `InvalidConfig` saying what to set otherwise."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    if os.environ.get("KUBERNETES_SERVICE_HOST") and context is None:
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except ConfigException:
            pass  # not a usable service account: try a kubeconfig
    try:
        return config.new_client_from_config(config_file=_kubeconfig(), context=context, persist_config=False)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise InvalidConfig(f"No usable Kubernetes configuration in {shown(where)} ({str(exc)[:200]}): set "
                            "KUBECONFIG to a kubeconfig file or pick a context with `kubectl config use-context`; "
                            "inside a cluster the pod needs a service account.") from None


def _kubeconfig() -> str:
    """``KUBECONFIG`` as it is now (the client reads it once, at import), else ``~/.kube/config``."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def default_namespace(context: str | None = None) -> str:
    """The namespace of the in-cluster service account or of the kubeconfig's context, else ``default``."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=_kubeconfig())
        chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
        return (chosen or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # no kubeconfig: load_api_client will say so
        return "default"


@contextmanager
def _client(api_client: Any) -> Iterator[Any]:
    """``api_client`` as given, or one from the kubeconfig that is closed afterwards."""
    if api_client is not None:
        yield api_client
        return
    owned = load_api_client()
    try:
        yield owned
    finally:
        owned.close()


def _server_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)[:500]
    except Exception:
        return str(exc.reason or exc.status)[:500]


@contextmanager
def _api_errors(what: str, name: str, namespace: str, host: str) -> Iterator[None]:
    """The client's HTTP and connection failures as talkgen errors that say what to do."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        message = _server_message(exc)
        if exc.status == 404:
            raise InvalidRequest(f"No Job {name!r} in namespace {namespace!r} ({message}): check the name and "
                                 "--namespace (`kubectl get jobs -n NAMESPACE`).", field="name") from None
        if exc.status == 409:
            raise InvalidRequest(f"A Job {name!r} already exists in namespace {namespace!r}: delete it first "
                                 "(`kubectl delete job NAME`) or give another --name.", field="name") from None
        if exc.status in (401, 403):
            raise InvalidConfig(f"The Kubernetes API server refused to {what} Job {name!r} in namespace "
                                f"{namespace!r} ({exc.status}: {message}): the kubeconfig's user needs "
                                "create/get/delete on jobs.batch there.") from None
        if exc.status in (400, 422):
            raise InvalidRequest(f"The Kubernetes API server rejected Job {name!r}: {message}.") from None
        raise EngineUnavailable(f"The Kubernetes API server failed to {what} Job {name!r} ({exc.status}: "
                                f"{message}); try again.") from None
    except HTTPError as exc:
        raise InvalidConfig(f"Cannot reach the Kubernetes API server at {host} ({type(exc).__name__}): check the "
                            "kubeconfig's current context (`kubectl config current-context`).") from None


def _job_dict(job: Any) -> dict[str, Any]:
    from talkgen.k8s.render import to_manifest

    data = to_manifest(job) if not isinstance(job, dict) else job
    if not isinstance(data, dict) or data.get("kind") != "Job":
        raise InvalidRequest(f"Only a Job can be submitted, got {shown(str((data or {}).get('kind')))}.",
                             field="kind")
    return data


def submit(job: Any, namespace: str | None = None, api_client: Any = None) -> Any:
    """Validate and create ``job`` (a `V1Job` or a manifest dict); returns the created `V1Job` (uid set).

    ``namespace`` None: the manifest's, else the kubeconfig context's (`default_namespace`).
    """
    from kubernetes.client import BatchV1Api

    from talkgen.k8s.checks import validate_manifest

    data = _job_dict(job)
    validate_manifest(data)
    declared = (data.get("metadata") or {}).get("namespace")
    namespace = namespace or declared or default_namespace()
    if declared and declared != namespace:
        raise InvalidRequest(f"The manifest is for namespace {declared!r} but --namespace is {namespace!r}: drop "
                             "one of them.", field="namespace")
    name = data["metadata"]["name"]
    with _client(api_client) as api, _api_errors("create", name, namespace, api.configuration.host):
        return BatchV1Api(api).create_namespaced_job(namespace, body=data)


def read_job(name: str, namespace: str, api_client: Any = None) -> Any:
    """The Job ``name`` with its status (a `V1Job`)."""
    from kubernetes.client import BatchV1Api

    with _client(api_client) as api, _api_errors("read", name, namespace, api.configuration.host):
        return BatchV1Api(api).read_namespaced_job_status(name, namespace)


def delete(name: str, namespace: str, api_client: Any = None) -> None:
    """Delete the Job and, in the background, its pods."""
    from kubernetes.client import BatchV1Api

    with _client(api_client) as api, _api_errors("delete", name, namespace, api.configuration.host):
        BatchV1Api(api).delete_namespaced_job(name, namespace, propagation_policy="Background")


def _outcome(job: Any) -> str:
    conditions = (job.status.conditions or []) if job.status else []
    for cond in conditions:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            return cond.type
    if job.spec and job.spec.suspend:
        return "Suspended"
    return "Running"


def batch_status(name: str, namespace: str, api_client: Any = None, storage_options: dict[str, Any] | None = None,
                 *, records: bool = True) -> BatchStatus:
    """The Job's indexes and counts, and (``records``) each request's status from the output prefix.

    A requests file or output prefix that cannot be read does not fail the call: ``items_error`` says why.
    """
    job = read_job(name, namespace, api_client)
    annotations = (job.metadata.annotations or {}) if job.metadata else {}
    status = job.status
    try:
        completed = parse_indexes(status.completed_indexes if status else None)
        failed_idx = parse_indexes(status.failed_indexes if status else None)
    except ValueError as exc:
        raise EngineUnavailable(f"The API server sent index ranges talkgen cannot read: {exc}.") from None
    shards = annotations.get(ANNOTATION_SHARDS)
    state = BatchStatus(
        name=name, namespace=namespace, uid=job.metadata.uid if job.metadata else None,
        requests=annotations.get(ANNOTATION_REQUESTS), output=annotations.get(ANNOTATION_OUTPUT),
        shards=int(shards) if shards and shards.isdigit() else (job.spec.completions if job.spec else None),
        completed_indexes=completed, failed_indexes=failed_idx,
        active=(status.active or 0) if status else 0, ready=(status.ready or 0) if status else 0,
        succeeded=(status.succeeded or 0) if status else 0, failed=(status.failed or 0) if status else 0,
        outcome=_outcome(job),
        conditions=[{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                    for c in (status.conditions or [] if status else [])])
    if not records:
        return state
    if not (state.requests and state.output and state.shards):
        return _with(state, None, f"the Job has no {ANNOTATION_REQUESTS} / {ANNOTATION_OUTPUT} / "
                                  f"{ANNOTATION_SHARDS} annotations (not rendered by talkgen?)")
    try:
        items = request_statuses(state, storage_options)
    except TalkgenError as exc:
        return _with(state, None, exc.message)
    except Exception as exc:  # storage outage: the Job's own state is still worth showing
        return _with(state, None, f"{type(exc).__name__}: {str(exc)[:300]}")
    return _with(state, items, None)


def _with(state: BatchStatus, items: list[RequestStatus] | None, error: str | None) -> BatchStatus:
    from dataclasses import replace

    return replace(state, items=items, items_error=error)


def request_statuses(state: BatchStatus, storage_options: dict[str, Any] | None = None) -> list[RequestStatus]:
    """Each line of the requests file with its record under the output prefix (read in parallel)."""
    from talkgen.batch.records import read_record
    from talkgen.batch.requests import read_requests

    assert state.requests and state.output and state.shards
    items = read_requests(state.requests, storage_options)
    output, shards = state.output, state.shards
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        found = list(pool.map(lambda item: read_record(output, item.key, storage_options), items))
    out = []
    for position, (item, record) in enumerate(zip(items, found, strict=True)):
        index = position % shards  # talkgen.batch.requests.shard: items[index::shards]
        if record is not None:
            status = str(record.get("status"))
            error = (record.get("response") or {}).get("error") if status != "succeeded" else None
        elif item.error is not None:
            status, error = "invalid", item.error.message
        elif index in state.failed_indexes or index in state.completed_indexes or state.finished:
            status, error = "missing", "its index ended without writing a record"
        else:
            status, error = "pending", None
        out.append(RequestStatus(key=item.key, line=item.line, index=index, status=status, record=record,
                                 error=error))
    return out
