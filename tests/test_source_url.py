"""UrlSource against a real loopback HTTP(S) server: SSRF refusals, redirects, retries, caps."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from talkgen.errors import (
    Cancelled,
    FetchFailed,
    ForbiddenSource,
    InvalidRequest,
    MediaTooLarge,
    TalkgenError,
    UnsupportedMedia,
)
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources import FetchContext, fetch_media, pick_source
from talkgen.sources import url as url_module
from talkgen.sources.url import UrlSource, display_url, is_public_address
from tests.support.http_server import LoopbackServer, Reply, tls_contexts
from tests.support.media_factory import make_image
from tests.support.source_checks import assert_refused, use_builtin_sources_only

PUBLIC_NAME = "public.test"  # a name the tests' fake DNS treats as a public host on 127.0.0.1


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits are recorded, not slept."""
    recorded: list[float] = []
    monkeypatch.setattr(url_module, "_sleep", lambda seconds, cancel: recorded.append(seconds))
    return recorded


@pytest.fixture
def fake_public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """`public.test` passes the SSRF check and is pinned to 127.0.0.1; everything else is checked for real."""
    real = url_module._validated_address

    def validated(host: str, port: int, field: str, settings: Settings) -> str:
        return "127.0.0.1" if host == PUBLIC_NAME else real(host, port, field, settings)

    monkeypatch.setattr(url_module, "_validated_address", validated)


@pytest.fixture
def png(tmp_path: Path) -> bytes:
    return make_image(tmp_path / "face.png").read_bytes()


def make_ctx(tmp_path: Path, **settings: object) -> FetchContext:
    settings = {"allow_private_urls": True, "url_retries": 0, **settings}
    return FetchContext(settings=Settings(**settings), dest_dir=tmp_path / "work")


def ref(url: str, field: str = "image_url") -> MediaRef:
    return MediaRef(role="image", field=field, via="url", value=url)


def refused(
    exc: pytest.ExceptionInfo[TalkgenError], ctx: FetchContext, code: str, field: str = "image_url"
) -> None:
    """The error names the field and code, and the work directory is empty."""
    assert_refused(exc, ctx, code, field)


# --- success ---------------------------------------------------------------------------------------


def test_downloads_a_file_from_loopback_when_private_urls_are_allowed(server, tmp_path, png):
    server.route("/face.png", Reply.file(png, "image/png"))
    ctx = make_ctx(tmp_path)
    path = UrlSource().fetch(ref(server.url("/face.png")), ctx)
    assert path == ctx.dest_dir / "input_image"
    assert path.read_bytes() == png


def test_body_exactly_at_the_size_limit_is_accepted(server, tmp_path):
    server.route("/exact", Reply.stream(100_000, content_length=False))
    ctx = make_ctx(tmp_path, max_download_mb=0.1)
    assert UrlSource().fetch(ref(server.url("/exact")), ctx).stat().st_size == 100_000


# --- SSRF ------------------------------------------------------------------------------------------


def test_refuses_loopback_url_without_connecting(server, tmp_path):
    server.route("/face.png", Reply.file(b"x"))
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref(server.url("/face.png")), ctx)
    refused(exc, ctx, "forbidden_source")
    assert "TALKGEN_ALLOW_PRIVATE_URLS" in exc.value.message
    assert server.hits["/face.png"] == 0


def test_refuses_a_host_name_that_resolves_to_loopback(server, tmp_path):
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref(server.url("/face.png", host="localhost"), field="wav_url"), ctx)
    refused(exc, ctx, "forbidden_source", field="wav_url")
    assert server.hits["/face.png"] == 0


@pytest.mark.parametrize(
    "host",
    ["10.0.0.5", "169.254.169.254", "100.64.1.1", "[::ffff:10.0.0.1]", "[fd00::1]", "0.0.0.0", "[::1]"],
)
def test_refuses_non_public_address_literals(tmp_path, host):
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref(f"http://{host}/face.png"), ctx)
    refused(exc, ctx, "forbidden_source")


def test_refuses_when_any_resolved_address_is_private(monkeypatch, tmp_path):
    monkeypatch.setattr(url_module, "_resolve", lambda host, port: ["8.8.8.8", "10.1.2.3"])
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref("https://mixed.example/face.png"), ctx)
    refused(exc, ctx, "forbidden_source")
    assert "10.1.2.3" in exc.value.message


@pytest.mark.parametrize(
    ("errno", "retryable", "requests"), [(socket.EAI_NONAME, False, 1), (socket.EAI_AGAIN, True, 2)]
)
def test_dns_failures(monkeypatch, tmp_path, errno, retryable, requests):
    calls = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        raise socket.gaierror(errno, "lookup failed")

    monkeypatch.setattr(url_module, "_resolve", resolve)
    ctx = make_ctx(tmp_path, url_retries=1)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref("https://nowhere.example/face.png"), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is retryable
    assert calls == ["nowhere.example"] * requests


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True),
        ("127.0.0.1", False), ("10.0.0.5", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("100.64.1.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
        ("240.0.0.1", False), ("::1", False), ("::", False), ("fd00::1", False), ("fe80::1", False),
        ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True), ("2002:a00:1::", False),
        ("64:ff9b::a00:1", False), ("ff02::1", False), ("192.0.2.1", False), ("198.18.0.1", False),
    ],
)
def test_is_public_address(address, public):
    assert is_public_address(address) is public


def test_redirect_to_a_private_address_is_refused(server, tmp_path, fake_public_dns):
    server.route("/start", Reply.redirect(server.url("/face.png")))
    server.route("/face.png", Reply.file(b"secret"))
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref(server.url("/start", host=PUBLIC_NAME)), ctx)
    refused(exc, ctx, "forbidden_source")
    assert server.hits["/start"] == 1
    assert server.hits["/face.png"] == 0


def test_public_hop_is_pinned_and_keeps_its_host_header(server, tmp_path, fake_public_dns, png):
    server.route("/start", Reply.redirect("/face.png"))
    server.route("/face.png", Reply.file(png))
    ctx = make_ctx(tmp_path, allow_private_urls=False)
    path = UrlSource().fetch(ref(server.url("/start", host=PUBLIC_NAME)), ctx)
    assert path.read_bytes() == png
    assert server.hosts["/face.png"] == [f"{PUBLIC_NAME}:{server.port}"]


def test_https_verifies_the_original_host_name_over_a_pinned_connection(tmp_path, fake_public_dns, png):
    server_tls, client_tls = tls_contexts(tmp_path, PUBLIC_NAME)
    with LoopbackServer(tls=server_tls) as srv:
        srv.route("/face.png", Reply.file(png))
        ctx = make_ctx(tmp_path, allow_private_urls=False)
        path = UrlSource(verify=client_tls).fetch(ref(srv.url("/face.png", host=PUBLIC_NAME)), ctx)
        assert path.read_bytes() == png


def test_https_with_a_certificate_for_another_name_fails_without_retry(tmp_path, fake_public_dns):
    server_tls, client_tls = tls_contexts(tmp_path, "other.test")
    with LoopbackServer(tls=server_tls) as srv:
        srv.route("/face.png", Reply.file(b"x"))
        ctx = make_ctx(tmp_path, allow_private_urls=False, url_retries=2)
        with pytest.raises(FetchFailed) as exc:
            UrlSource(verify=client_tls).fetch(ref(srv.url("/face.png", host=PUBLIC_NAME)), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is False
    assert "certificate" in exc.value.message


# --- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_a_redirect_chain_relative_and_absolute(server, tmp_path, png, status):
    server.route("/a", Reply.redirect("/b", status))
    server.route("/b", Reply.redirect(server.url("/c"), status))
    server.route("/c", Reply.redirect("d.png", status))
    server.route("/d.png", Reply.file(png))
    path = UrlSource().fetch(ref(server.url("/a")), make_ctx(tmp_path))
    assert path.read_bytes() == png
    assert [server.hits[p] for p in ("/a", "/b", "/c", "/d.png")] == [1, 1, 1, 1]


def test_redirect_loop_fails_without_retry(server, tmp_path):
    server.route("/one", Reply.redirect("/two"))
    server.route("/two", Reply.redirect("/one"))
    ctx = make_ctx(tmp_path, url_retries=3)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(server.url("/one")), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is False
    assert "loop" in exc.value.message
    assert server.hits["/one"] == 1


def test_redirects_beyond_the_limit_fail(server, tmp_path, png):
    for i in range(3):
        server.route(f"/hop{i}", Reply.redirect(f"/hop{i + 1}"))
    server.route("/hop3", Reply.file(png))
    ctx = make_ctx(tmp_path, url_max_redirects=2)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(server.url("/hop0")), ctx)
    refused(exc, ctx, "fetch_failed")
    assert "more than 2" in exc.value.message
    assert server.hits["/hop3"] == 0
    # One hop fewer is within the limit.
    assert UrlSource().fetch(ref(server.url("/hop1")), ctx).read_bytes() == png


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://example.com/a.png"])
def test_redirect_to_a_non_http_scheme_is_refused(server, tmp_path, location):
    server.route("/start", Reply.redirect(location))
    ctx = make_ctx(tmp_path)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(ref(server.url("/start")), ctx)
    refused(exc, ctx, "forbidden_source")


# --- status codes and retries ----------------------------------------------------------------------


def test_404_fails_at_once_and_is_not_retryable(server, tmp_path, sleeps):
    ctx = make_ctx(tmp_path, url_retries=3)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(server.url("/missing.png?token=SECRET")), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is False
    assert "HTTP 404" in exc.value.message and "check the URL" in exc.value.message
    assert "SECRET" not in exc.value.message
    assert server.hits["/missing.png"] == 1
    assert sleeps == []


def test_500_then_200_succeeds_after_one_retry(server, tmp_path, png, sleeps):
    server.route("/flaky.png", Reply.error(500), Reply.file(png))
    path = UrlSource().fetch(ref(server.url("/flaky.png")), make_ctx(tmp_path, url_retries=2))
    assert path.read_bytes() == png
    assert server.hits["/flaky.png"] == 2
    assert sleeps == [0.5]


def test_persistent_503_fails_retryable_after_the_configured_retries(server, tmp_path, sleeps):
    server.route("/down.png", Reply.error(503))
    ctx = make_ctx(tmp_path, url_retries=2)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(server.url("/down.png")), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is True
    assert exc.value.details == {"retries": 2}
    assert "HTTP 503" in exc.value.message and "after 2 retries" in exc.value.message
    assert server.hits["/down.png"] == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("retry_after", "waited"), [("3", 3.0), ("3600", 5.0), ("soon", 0.5)])
def test_429_honours_retry_after_up_to_a_cap(server, tmp_path, png, sleeps, retry_after, waited):
    server.route("/busy.png", Reply.error(429, retry_after=retry_after), Reply.file(png))
    UrlSource().fetch(ref(server.url("/busy.png")), make_ctx(tmp_path, url_retries=1))
    assert sleeps == [waited]


def test_slow_response_times_out_and_is_retried(server, tmp_path):
    server.route("/slow.png", Reply.slow(5.0))
    ctx = make_ctx(tmp_path, url_read_timeout_s=0.2, url_retries=1)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(server.url("/slow.png")), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is True
    assert "timed out" in exc.value.message
    assert server.hits["/slow.png"] == 2


def test_connection_refused_is_retryable(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    ctx = make_ctx(tmp_path)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(ref(f"http://127.0.0.1:{port}/face.png"), ctx)
    refused(exc, ctx, "fetch_failed")
    assert exc.value.retryable is True


# --- size caps and cancellation --------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_oversize_body_is_refused_and_leaves_no_file(server, tmp_path, content_length):
    server.route("/big", Reply.stream(3_000_000, content_length=content_length))
    ctx = make_ctx(tmp_path, max_download_mb=1)
    with pytest.raises(MediaTooLarge) as exc:
        UrlSource().fetch(ref(server.url("/big")), ctx)
    refused(exc, ctx, "media_too_large")
    assert "TALKGEN_MAX_DOWNLOAD_MB" in exc.value.message


def test_cancel_during_download_stops_and_leaves_no_file(server, tmp_path):
    ctx = make_ctx(tmp_path)

    def body():
        yield b"\0" * 65536
        ctx.cancel.set()  # the client is still reading its first 1 MiB chunk
        for _ in range(100):
            yield b"\0" * 65536

    server.route("/long", Reply(body=body, content_length=False))
    with pytest.raises(Cancelled) as exc:
        UrlSource().fetch(ref(server.url("/long")), ctx)
    refused(exc, ctx, "cancelled")


# --- routing, messages, and the core's content check -----------------------------------------------


@pytest.fixture
def sources_only(monkeypatch: pytest.MonkeyPatch) -> None:
    use_builtin_sources_only(monkeypatch)


def test_http_and_https_urls_route_to_the_url_source(sources_only):
    assert isinstance(pick_source(ref("https://example.com/a.png")), UrlSource)
    assert isinstance(pick_source(ref("HTTP://example.com/a.png")), UrlSource)
    assert not UrlSource().handles(ref("s3://bucket/a.png"))
    assert not UrlSource().handles(MediaRef(role="image", field="image_path", via="path", value="http://x/a"))


def test_html_served_as_an_image_is_unsupported_media(server, tmp_path, sources_only):
    server.route("/page", Reply.file(b"<!doctype html><html><body>login</body></html>", "image/png"))
    ctx = make_ctx(tmp_path)
    with pytest.raises(UnsupportedMedia) as exc:
        fetch_media(ref(server.url("/page")), ctx)
    refused(exc, ctx, "unsupported_media")


def test_display_url_hides_credentials_and_query():
    assert display_url("https://user:pw@host.example:8443/a/b.png?sig=abc#x") == "https://host.example:8443/a/b.png?…"
    assert display_url("http://user:pw@[::1/a?sig=abc") == "http URL"


@pytest.mark.parametrize("url", ["http://[::1/face.png", "https:///face.png", "http://example.com:abc/a.png"])
def test_malformed_urls_are_invalid_requests(tmp_path, url):
    assert UrlSource().handles(ref(url))
    ctx = make_ctx(tmp_path)
    with pytest.raises(InvalidRequest) as exc:
        UrlSource().fetch(ref(url), ctx)
    refused(exc, ctx, "invalid_request")
