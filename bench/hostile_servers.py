"""Loopback servers for bench/hostile.py: an HTTP server that misbehaves on purpose, and moto S3.

Every route of `HostileHttp` writes raw bytes, so it can lie about lengths and encodings, stall, drop
the connection or answer with garbage. `ROUTES` lists them; `S3_OBJECTS` the objects in moto's bucket.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hostile_media import NOT_MEDIA, gzip_bomb

Route = Callable[[BaseHTTPRequestHandler], None]
BUCKET = "hostile"


class HostileHttp:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose routes are the functions in `routes`."""

    def __init__(self, media: dict[str, Path]) -> None:
        self.stopping = threading.Event()
        self.routes = build_routes(media, self.stopping)
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HostileHttp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on hostile replies is the point


def _handler(server: HostileHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            route = server.routes.get(path)
            self.close_connection = True  # one request per connection: a route may leave the stream broken
            with contextlib.suppress(OSError):
                (route or _status(404))(self)
                self.wfile.flush()

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _head(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str] | list[tuple[str, str]]) -> None:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers.items() if isinstance(headers, dict)
                                                                   else headers)]
    h.wfile.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1"))


def _body(data: bytes, status: int = 200, **headers: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        _head(h, status, {"Content-Length": str(len(data)), **{k.replace("_", "-"): v for k, v in headers.items()}})
        h.wfile.write(data)

    return route


def _raw(data: bytes) -> Route:
    return lambda h: h.wfile.write(data)


def _status(status: int, **headers: str) -> Route:
    return _body(f"error {status}".encode(), status, **headers)


def _redirect(location: str, status: int = 302) -> Route:
    return _body(b"", status, Location=location)


def _lying_length(data: bytes, length: str) -> Route:
    """Says ``Content-Length: length``, sends ``data``, hangs up."""

    def route(h: BaseHTTPRequestHandler) -> None:
        _head(h, 200, {"Content-Type": "image/png", "Content-Length": length})
        h.wfile.write(data)

    return route


def _drip(stopping: threading.Event, total: int = 100_000, every_s: float = 1.0, chunked: bool = False) -> Route:
    """One byte per ``every_s`` seconds until the client hangs up."""

    def route(h: BaseHTTPRequestHandler) -> None:
        headers = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
        _head(h, 200, {"Content-Type": "image/png", **headers})
        for _ in range(total):
            h.wfile.write(b"1\r\nx\r\n" if chunked else b"x")
            h.wfile.flush()
            if stopping.wait(every_s):
                return

    return route


def _stall(stopping: threading.Event, seconds: float = 60.0) -> Route:
    """Accepts the request and says nothing for ``seconds``."""
    return lambda h: stopping.wait(seconds) and None


def _endless(chunked: bool) -> Route:
    """An unending body, chunked or without any length."""

    def route(h: BaseHTTPRequestHandler) -> None:
        _head(h, 200, {"Content-Type": "image/png", **({"Transfer-Encoding": "chunked"} if chunked else {})})
        block = os.urandom(1 << 16)
        framed = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        for _ in range(1 << 16):  # 4 GB, far above any cap
            h.wfile.write(framed)

    return route


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Hang up with a TCP RST (linger 0: the close after this request resets the connection)."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def build_routes(media: dict[str, Path], stopping: threading.Event) -> dict[str, Route]:
    """Path → misbehaviour. Route names are what the requests and the report call them."""
    png, wav = media["portrait"].read_bytes(), media["speech"].read_bytes()
    bomb = gzip_bomb()
    r: dict[str, Route] = {
        "/png": _body(png, Content_Type="image/png"),
        "/gzip-bomb": _body(bomb, Content_Type="image/png", Content_Encoding="gzip"),
        "/gzip-bomb-wav": _body(bomb, Content_Type="audio/wav", Content_Encoding="gzip"),
        "/gzip-bomb-plain": _body(bomb, Content_Type="application/gzip"),
        "/deflate-bomb": _body(bomb[10:-8], Content_Type="image/png", Content_Encoding="deflate"),
        "/gzip-broken": _body(bomb[: len(bomb) // 2], Content_Type="image/png", Content_Encoding="gzip"),
        "/br-garbage": _body(os.urandom(5000), Content_Type="image/png", Content_Encoding="br"),
        "/zstd-garbage": _body(os.urandom(5000), Content_Type="image/png", Content_Encoding="zstd"),
        "/stacked-encodings": _body(bomb, Content_Type="image/png", Content_Encoding="gzip, gzip, br, identity"),
        "/unknown-encoding": _body(png, Content_Type="image/png", Content_Encoding="x-hostile"),
        "/transfer-gzip": _body(bomb, Content_Type="image/png", Transfer_Encoding="gzip"),
        "/truncated": _lying_length(png[:1000], str(len(png))),
        "/length-huge": _lying_length(png[:1000], str(10**15)),
        "/length-negative": _lying_length(png, "-1"),
        "/length-garbage": _lying_length(png, "twelve"),
        "/length-overflow": _lying_length(png, "9" * 40),
        "/html-200": _body(b"<html><body>not an image</body></html>", Content_Type="text/html"),
        "/png-as-html": _body(png, Content_Type="text/html; charset=utf-8"),
        "/png-as-wav": _body(png, Content_Type="audio/wav"),
        "/wav-as-png": _body(wav, Content_Type="image/png"),
        "/notmedia": _body(NOT_MEDIA, Content_Type="image/png"),
        "/empty": _body(b"", Content_Type="image/png"),
        "/type-garbage": _body(png, Content_Type="\x00\xff/;;;=="),
        "/no-content-type": _raw(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"),
        "/status-500": _status(500),
        "/status-502": _status(502),
        "/status-503-retry-after": _status(503, Retry_After="999999"),
        "/status-429": _status(429, Retry_After="-5"),
        "/status-404": _status(404),
        "/status-403": _status(403),
        "/status-204": _status(204),
        "/status-206": _body(png[:100], 206, Content_Range="bytes 0-99/999999"),
        "/status-304": _status(304),
        "/status-999": _status(999),
        "/status-101": _raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        "/redirect-loop": _redirect("/redirect-loop"),
        "/redirect-pingpong-a": _redirect("/redirect-pingpong-b", 301),
        "/redirect-pingpong-b": _redirect("/redirect-pingpong-a", 307),
        "/redirect-metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
        "/redirect-private": _redirect("http://10.255.255.1/x.png"),
        "/redirect-file": _redirect("file:///etc/passwd"),
        "/redirect-gopher": _redirect("gopher://127.0.0.1:70/_x"),
        "/redirect-s3": _redirect("s3://hostile/garbage.png"),
        "/redirect-refused": _redirect("http://127.0.0.1:1/x.png"),
        "/redirect-no-location": _status(302),
        "/redirect-garbage": _redirect("http://[::1/%zz\x7f"),
        "/redirect-huge": _redirect("/png?" + "a" * 200_000),
        "/redirect-ok": _redirect("/png", 308),
        "/slow-body": _drip(stopping),
        "/slow-chunked": _drip(stopping, chunked=True),
        "/slow-headers": _stall(stopping),
        "/close-now": lambda h: h.connection.shutdown(socket.SHUT_RDWR),
        "/reset": _reset,
        "/garbage-status": _raw(b"HELLO WORLD\r\n\r\n"),
        "/http09": _raw(png),
        "/bad-chunked": _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"),
        "/chunk-too-big": _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"),
        "/endless-chunked": _endless(chunked=True),
        "/endless-no-length": _endless(chunked=False),
        "/huge-header": _body(png, Content_Type="image/png", X_Big="a" * 1_000_000),
        "/many-headers": _raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
                              + b"Content-Length: 4\r\n\r\nabcd"),
        "/two-lengths": _raw(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 400\r\n\r\nabcd"),
        "/nul-header": _raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\x00evil\r\nContent-Length: 4\r\n\r\nabcd"),
    }
    for i in range(30):
        r[f"/chain/{i}"] = _redirect(f"/chain/{i + 1}")
    r["/chain/30"] = _body(png, Content_Type="image/png")
    return r


def down_endpoint() -> str:
    """A loopback URL nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


S3_OBJECTS: dict[str, str | bytes] = {
    "garbage.png": b"\x89PNG" + b"\xde\xad\xbe\xef" * 1000,
    "empty.wav": b"",
    "notmedia.wav": NOT_MEDIA,
    "portrait.png": "portrait",  # media names: copied from the hostile media
    "bomb.png": "png_bomb",
    "trunc.png": "trunc_png",
    "dir/../dotdot.png": "portrait",
    "huge.bin": b"",  # filled with HUGE_S3 bytes (over the bench's download cap)
}
HUGE_S3 = 60_000_000


def start_s3(media: dict[str, Path]) -> tuple[Any, dict[str, Any]]:
    """moto's S3 in server mode with `S3_OBJECTS` in bucket `BUCKET`: (server, s3fs storage options)."""
    from tests.support.s3 import MotoS3

    s3 = MotoS3().start()
    fs = s3.filesystem()
    fs.mkdir(BUCKET)
    for key, value in S3_OBJECTS.items():
        data = media[value].read_bytes() if isinstance(value, str) else value
        with fs.open(f"{BUCKET}/{key}", "wb") as out:
            if key == "huge.bin":
                block = bytes(1 << 20)
                for _ in range(HUGE_S3 >> 20):
                    out.write(block)
            out.write(data)
    return s3, s3.storage_options


def down_s3_options() -> dict[str, Any]:
    """s3fs options pointing at a closed port, with one attempt and short timeouts."""
    return {"key": "testing", "secret": "testing", "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": down_endpoint(), "region_name": "eu-west-1"},
            "config_kwargs": {"connect_timeout": 1, "read_timeout": 2, "retries": {"max_attempts": 1}}}


def wait_port(port: int, timeout_s: float = 5.0) -> None:
    """Block until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
