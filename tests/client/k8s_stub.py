"""A loopback stand-in for the Kubernetes Jobs API (create, read, delete in one namespace) and an
``ApiClient`` configured for it. Tests set a stored Job's ``status`` to play the cluster."""

from __future__ import annotations

import copy
from typing import Any

from tests.client.stub_server import StubServer

BASE = "/apis/batch/v1/namespaces/{ns}/jobs"


class JobsStub:
    def __init__(self, stub: StubServer, namespace: str) -> None:
        self.stub = stub
        self.namespace = namespace
        self.jobs: dict[str, dict[str, Any]] = {}
        stub.on("POST", BASE.format(ns=namespace), self._create)

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["metadata"]["name"]
        if name in self.jobs:
            return 409, {"kind": "Status", "message": f'jobs.batch "{name}" already exists', "code": 409}
        job = copy.deepcopy(body)
        job["metadata"].update(uid=f"uid-{name}", creationTimestamp="2026-01-01T00:00:00Z",
                               namespace=self.namespace)
        job["status"] = {}
        self.jobs[name] = job
        path = f"{BASE.format(ns=self.namespace)}/{name}"
        self.stub.on("GET", path, lambda _body: self._read(name))
        self.stub.on("DELETE", path, lambda _body: self._delete(name))
        return 201, job

    def _read(self, name: str) -> tuple[int, Any]:
        if name not in self.jobs:
            return 404, {"kind": "Status", "message": f'jobs.batch "{name}" not found', "code": 404}
        return 200, self.jobs[name]

    def _delete(self, name: str) -> tuple[int, Any]:
        if self.jobs.pop(name, None) is None:
            return 404, {"kind": "Status", "message": f'jobs.batch "{name}" not found', "code": 404}
        return 200, {"kind": "Status", "status": "Success"}

    def api_client(self) -> Any:
        from kubernetes import client

        config = client.Configuration()
        config.host = self.stub.url
        return client.ApiClient(config)
