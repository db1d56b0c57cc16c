"""A loopback stand-in for the Kubernetes Jobs API (batch/v1), for submit/status tests without a cluster.

    with FakeJobsApi() as api:
        created = BatchV1Api(api.api_client()).create_namespaced_job("talkgen", body=manifest)
        api.set_status("talkgen", created.metadata.name, {"completedIndexes": "0-6", "failedIndexes": "7"})

Routes: ``POST /apis/batch/v1/namespaces/{ns}/jobs`` (stores the Job, sets uid, creationTimestamp,
resourceVersion and an empty status; 409 if the name is taken), ``GET …/jobs`` (list), ``GET …/jobs/{name}``
and ``…/{name}/status``, ``DELETE …/jobs/{name}`` (records ``propagationPolicy``). Errors are
``Status`` objects, as the real server sends. ``calls`` records ``(method, path, query)`` of each request.
It does no validation of its own: that is what the code under test must do before it calls.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_ROUTE = re.compile(r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+)(?P<sub>/status)?)?")


class FakeJobsApi:
    """Threaded HTTP server on 127.0.0.1 with a free port, holding Jobs in memory."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []
        self.fail_next: tuple[int, str] | None = None  # (HTTP status, reason) for the next request
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def host(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeJobsApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` that talks to this server (no kubeconfig involved)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.host
        cfg.retries = 0
        return client.ApiClient(cfg)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge ``status`` (camelCase, e.g. completedIndexes, failedIndexes, succeeded, conditions) into the Job."""
        with self._lock:
            self.jobs[(namespace, name)].setdefault("status", {}).update(status)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                blob = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def _route(self) -> re.Match[str] | None:
                url = urlsplit(self.path)
                api.calls.append((self.command, url.path, parse_qs(url.query)))
                if api.fail_next is not None:
                    code, reason = api.fail_next
                    api.fail_next = None
                    self._status(code, reason, f"scripted failure {code}")
                    return None
                match = _ROUTE.fullmatch(url.path)
                if match is None:
                    self._status(404, "NotFound", f"the stub has no route {url.path}")
                return match

            def _body(self) -> dict[str, Any]:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def do_POST(self) -> None:
                match = self._route()
                if match is None:
                    return
                job, ns = self._body(), match["ns"]
                name = job.get("metadata", {}).get("name")
                with api._lock:
                    if (ns, name) in api.jobs:
                        return self._status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
                    meta = job.setdefault("metadata", {})
                    meta.update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1",
                                creationTimestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
                    job.setdefault("status", {})
                    api.jobs[(ns, name)] = job
                self._send(201, job)

            def do_GET(self) -> None:
                match = self._route()
                if match is None:
                    return
                ns, name = match["ns"], match["name"]
                with api._lock:
                    if name is None:
                        items = [j for (n, _), j in api.jobs.items() if n == ns]
                        return self._send(200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                                                "items": items})
                    job = api.jobs.get((ns, name))
                if job is None:
                    return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
                self._send(200, job)

            def do_DELETE(self) -> None:
                match = self._route()
                if match is None:
                    return
                with api._lock:
                    job = api.jobs.pop((match["ns"], match["name"]), None)
                if job is None:
                    return self._status(404, "NotFound", f'jobs.batch "{match["name"]}" not found')
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                 "details": {"name": match["name"], "group": "batch", "kind": "jobs",
                                             "uid": job["metadata"]["uid"]}})

        return Handler
