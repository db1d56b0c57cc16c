"""A loopback JSON server with scripted answers per (method, path), recording every request it gets.

    with StubServer() as stub:
        stub.on("GET", "/status/j1", (503, {}), (503, {}), (200, {"id": "j1", "status": "COMPLETED"}))
        ... stub.url ... stub.calls  # [(method, path, headers, json body), ...]

Routes match the path without its query string (``calls`` keep it). Each route replays its answers in
order and then repeats the last; an unscripted route is 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Answer = tuple  # (status, JSON body or bytes[, headers])


class StubServer:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[Answer | Callable[[Any], Answer]]] = {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def on(self, method: str, path: str, *answers: Answer | Callable[[Any], Answer]) -> StubServer:
        with self._lock:
            self._routes[(method, path)] = list(answers)
        return self

    def paths(self, method: str | None = None) -> list[str]:
        return [f"{m} {p}" for m, p, _, _ in self.calls if method in (None, m)]

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        with self._lock:
            self.calls.append((method, path, headers, body))
            answers = self._routes.get((method, urlsplit(path).path))
            if not answers:
                return 404, {"detail": "Not Found"}
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(body) if callable(answer) else answer

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, *extra = stub.answer(self.command, self.path, headers, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
