"""A loopback stand-in for the Hugging Face Hub's file endpoint, enough for ``hf_hub_download``.

Serves ``/{repo}/resolve/{revision}/{path}`` for HEAD and GET with the headers huggingface_hub reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``) and honours ``Range`` (resumed downloads). ``cut``
maps a file name to a list of byte counts: each of its next GETs stops after the next count, as a
dropped connection does.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.cut: dict[str, list[int]] = {}
        self.ranges: list[str] = []
        self.gets: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _lookup(self) -> bytes | None:
                parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
                if "resolve" not in parts:
                    return None
                at = parts.index("resolve")
                repo = "/".join(parts[:at])
                rest = parts[at + 1:]
                for revision_len in (3, 1):  # refs/pr/1 or a single segment
                    key = (repo, "/".join(rest[:revision_len]), "/".join(rest[revision_len:]))
                    if key in hub.files:
                        return hub.files[key]
                return None

            def _headers(self, data: bytes, status: int = 200, start: int = 0) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self) -> None:
                data = self._lookup()
                if data is None:
                    self.send_error(404)
                    return
                self._headers(data)

            def do_GET(self) -> None:
                data = self._lookup()
                if data is None:
                    self.send_error(404)
                    return
                hub.gets.append(self.path)
                start = 0
                if self.headers.get("Range"):
                    hub.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self._headers(data, 206 if start else 200, start)
                body = data[start:]
                name = unquote(self.path).rsplit("/", 1)[-1]
                if hub.cut.get(name):
                    body = body[: hub.cut[name].pop(0)]
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, revision: str, path: str, data: bytes) -> None:
        self.files[(repo, revision, path)] = data

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
