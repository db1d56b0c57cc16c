"""Inputs that are small on the wire but costly to take in: compressed bodies, slow senders, metadata
addresses; and the content hash every source records while writing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from talkgen.errors import FetchFailed, ForbiddenSource
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources import FetchContext, fetch_media
from talkgen.sources import url as url_module
from talkgen.sources.base64 import Base64Source
from talkgen.sources.path import PathSource
from talkgen.sources.url import UrlSource, address_class
from tests.support.http_server import LoopbackServer, Reply
from tests.support.media_factory import make_image
from tests.support.source_checks import assert_refused, use_builtin_sources_only


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(url_module, "_sleep", lambda seconds, cancel: None)


def make_ctx(tmp_path: Path, **settings: object) -> FetchContext:
    options = {"allow_private_urls": True, "url_retries": 0, "allowed_path_roots": [tmp_path], **settings}
    return FetchContext(Settings(**options), dest_dir=tmp_path / "work")


def url_ref(url: str) -> MediaRef:
    return MediaRef(role="image", field="image_url", via="url", value=url)


# --- compressed bodies ---------------------------------------------------------------------------

GZIP_BOMB = gzip.compress(b"\0" * 20_000_000, compresslevel=9)  # ~20 KB that inflates to 20 MB


@pytest.mark.parametrize(("encoding", "body"), [
    ("gzip", GZIP_BOMB),
    ("gzip", b"\x1f\x8b\x08\x00broken gzip"),
    ("deflate", zlib.compress(b"\0" * 1_000_000)),
    ("br", b"\x1b\xff\xff"),
    ("zstd", b"(\xb5/\xfd"),
    ("GZIP, identity", GZIP_BOMB),
])
def test_a_content_encoded_body_is_refused_not_decoded(server, tmp_path, encoding, body):
    server.route("/bomb.png", Reply(body=body, headers={"Content-Encoding": encoding}))
    ctx = make_ctx(tmp_path)
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(url_ref(server.url("/bomb.png")), ctx)
    assert_refused(exc, ctx, "fetch_failed", "image_url")
    assert exc.value.retryable is False
    assert "Content-Encoding" in exc.value.message and "without content encoding" in exc.value.message
    assert server.hits["/bomb.png"] == 1  # not retried: the server must change


def test_identity_encoding_and_gzip_files_are_written_byte_for_byte(server, tmp_path):
    """A .gz file served as is (no Content-Encoding) is the input's bytes: nothing is decoded."""
    data = gzip.compress(b"payload" * 1000)
    server.route("/a.gz", Reply(body=data, headers={"Content-Encoding": "identity"}))
    ctx = make_ctx(tmp_path)
    path = UrlSource().fetch(url_ref(server.url("/a.gz")), ctx)
    assert path.read_bytes() == data
    assert ctx.digests[path] == hashlib.sha256(data).hexdigest()


# --- the per-input download deadline -------------------------------------------------------------


def trickle(first: bytes = b"\x89PNG", every_s: float = 0.1, count: int = 200) -> Reply:
    """One byte per ``every_s``: each read is well inside the read timeout, the whole is not."""

    def body() -> Iterator[bytes]:
        yield first
        for _ in range(count):
            time.sleep(every_s)
            yield b"\0"

    return Reply(body=body, content_length=False)


def test_a_slow_sender_fails_at_the_download_deadline(server, tmp_path):
    server.route("/slow.png", trickle())
    ctx = make_ctx(tmp_path, download_timeout_s=1.0, url_read_timeout_s=5)
    start = time.monotonic()
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(url_ref(server.url("/slow.png")), ctx)
    assert time.monotonic() - start < 4
    assert_refused(exc, ctx, "fetch_failed", "image_url")
    assert exc.value.retryable is True
    assert "TALKGEN_DOWNLOAD_TIMEOUT_S" in exc.value.message


def test_the_wait_for_the_first_byte_is_bounded_by_the_download_deadline(server, tmp_path):
    server.route("/late.png", Reply.slow(10.0))
    ctx = make_ctx(tmp_path, download_timeout_s=0.5, url_read_timeout_s=30, url_retries=3)
    start = time.monotonic()
    with pytest.raises(FetchFailed) as exc:
        UrlSource().fetch(url_ref(server.url("/late.png")), ctx)
    assert time.monotonic() - start < 3
    assert "TALKGEN_DOWNLOAD_TIMEOUT_S" in exc.value.message
    assert exc.value.retryable is True


def test_each_input_gets_its_own_download_clock(server, tmp_path):
    """The deadline is per input: a second input is not charged for the first one's time."""
    server.route("/a", Reply.file(b"a" * 10))
    ctx = make_ctx(tmp_path, download_timeout_s=0.5)
    first = ctx.for_input()
    time.sleep(0.6)
    assert ctx.input_deadline is None  # the shared context never runs a clock itself
    UrlSource().fetch(url_ref(server.url("/a")), ctx)  # a fresh clock
    with pytest.raises(FetchFailed):
        UrlSource().fetch(url_ref(server.url("/a")), first)  # the old one has run out


@pytest.mark.parametrize("via", ["path", "base64"])
def test_local_sources_keep_the_download_deadline(tmp_path, via):
    data = b"x" * 1000
    (tmp_path / "in.bin").write_bytes(data)
    ctx = make_ctx(tmp_path)
    late = FetchContext(ctx.settings, ctx.dest_dir, input_deadline=time.monotonic() - 1)
    field = f"image_{via}"
    value = str(tmp_path / "in.bin") if via == "path" else base64.b64encode(data).decode()
    source = PathSource() if via == "path" else Base64Source()
    with pytest.raises(FetchFailed) as exc:
        source.fetch(MediaRef(role="image", field=field, via=via, value=value), late)
    assert_refused(exc, late, "fetch_failed", field)
    assert "TALKGEN_DOWNLOAD_TIMEOUT_S" in exc.value.message


# --- link-local and cloud-metadata addresses -----------------------------------------------------

METADATA = ["169.254.169.254", "169.254.170.2", "fe80::1", "fd00:ec2::254", "100.100.100.200",
            "168.63.129.16", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_stay_refused_when_private_urls_are_allowed(monkeypatch, tmp_path, address):
    monkeypatch.setattr(url_module, "_resolve", lambda host, port: [address])
    assert address_class(address) == "link_local"
    ctx = make_ctx(tmp_path, allow_private_urls=True)
    with pytest.raises(ForbiddenSource) as exc:
        UrlSource().fetch(url_ref("http://metadata.test/latest/meta-data/"), ctx)
    assert_refused(exc, ctx, "forbidden_source", "image_url")
    assert "TALKGEN_ALLOW_LINK_LOCAL_URLS" in exc.value.message


@pytest.mark.parametrize("address", METADATA)
def test_link_local_addresses_open_only_with_their_own_setting(address):
    settings = Settings(allow_private_urls=False, allow_link_local_urls=True)
    assert url_module._validated_address(address, 80, "image_url", settings) == address


def test_private_addresses_still_follow_allow_private_urls():
    assert address_class("10.0.0.1") == "private"
    with pytest.raises(ForbiddenSource) as exc:
        url_module._validated_address("10.0.0.1", 80, "image_url", Settings(allow_link_local_urls=True))
    assert "TALKGEN_ALLOW_PRIVATE_URLS" in exc.value.message
    assert url_module._validated_address("10.0.0.1", 80, "f", Settings(allow_private_urls=True)) == "10.0.0.1"


# --- content hashes ------------------------------------------------------------------------------


def fetch_every_way(data: bytes, name: str, server: LoopbackServer, tmp_path: Path) -> list[str]:
    """``media.sha256`` of ``data`` fetched by path, by URL, as base64 and from storage (memory://)."""
    import fsspec

    (tmp_path / name).write_bytes(data)
    server.route(f"/{name}", Reply.file(data))
    fsspec.filesystem("memory").pipe(f"/talkgen-test/{name}", data)
    refs = [
        MediaRef(role="image", field="image_path", via="path", value=str(tmp_path / name)),
        MediaRef(role="image", field="image_url", via="url", value=server.url(f"/{name}")),
        MediaRef(role="image", field="image_base64", via="base64",
                 value="data:image/png;base64," + base64.b64encode(data).decode()),
        MediaRef(role="image", field="image_url", via="url", value=f"memory://talkgen-test/{name}"),
    ]
    digests = []
    for ref in refs:
        ctx = make_ctx(tmp_path / ref.via / ref.value[:3], allowed_path_roots=[tmp_path])
        digests.append(fetch_media(ref, ctx).sha256)
    return digests


def test_the_same_bytes_hash_the_same_through_every_source(server, tmp_path, monkeypatch):
    use_builtin_sources_only(monkeypatch)
    one = make_image(tmp_path / "one.png").read_bytes()
    two = make_image(tmp_path / "two.png", color=(10, 20, 30)).read_bytes()
    first = fetch_every_way(one, "one.png", server, tmp_path)
    second = fetch_every_way(two, "two.png", server, tmp_path)
    assert first == [hashlib.sha256(one).hexdigest()] * 4
    assert second == [hashlib.sha256(two).hexdigest()] * 4
    assert first[0] != second[0]


def test_a_retried_download_hashes_only_the_final_body(server, tmp_path, monkeypatch):
    use_builtin_sources_only(monkeypatch)
    png = make_image(tmp_path / "face.png").read_bytes()
    server.route("/flaky.png", Reply.error(503), Reply.file(png))
    media = fetch_media(url_ref(server.url("/flaky.png")), make_ctx(tmp_path, url_retries=1))
    assert media.sha256 == hashlib.sha256(png).hexdigest()


def test_a_source_that_records_no_digest_is_hashed_after_the_fetch(tmp_path, monkeypatch):
    """Third-party sources that write their own way still yield ``media.sha256``."""
    import talkgen.sources as sources

    png = make_image(tmp_path / "face.png").read_bytes()

    class Plain:
        def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
            dest = ctx.dest_for(ref)
            dest.write_bytes(png)
            return dest

    monkeypatch.setattr(sources, "pick_source", lambda ref: Plain())
    media = fetch_media(url_ref("plugin://face"), make_ctx(tmp_path))
    assert media.sha256 == hashlib.sha256(png).hexdigest()
