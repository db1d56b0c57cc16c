"""FsspecSource against a real moto S3 server and fsspec's memory filesystem."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from talkgen.errors import Cancelled, FetchFailed, ForbiddenSource, MediaTooLarge, MediaUnreadable, UnsupportedMedia
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources import FetchContext, pick_source
from talkgen.sources.fsspec import FsspecSource
from tests.support.media_factory import make_wav
from tests.support.s3 import MotoS3
from tests.support.source_checks import assert_refused, use_builtin_sources_only


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the test's storage options may configure S3 (no profile, endpoint or proxy from the host)."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    pytest.importorskip("s3fs", reason="needs the s3 extra: pip install 'talkgen[s3]'")
    pytest.importorskip("moto.server", reason="needs moto[server] (dev extra)")
    with MotoS3() as server:
        yield server


@pytest.fixture
def bucket(s3: MotoS3) -> str:
    name = f"talkgen-{uuid.uuid4().hex[:12]}"
    s3.filesystem().mkdir(name)
    return name


@pytest.fixture
def memory() -> Iterator[fsspec.AbstractFileSystem]:
    """fsspec's memory filesystem, emptied before and after (its store is global to the process)."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


@pytest.fixture
def wav(tmp_path: Path) -> bytes:
    return make_wav(tmp_path / "voice.wav").read_bytes()


def make_ctx(tmp_path: Path, s3: MotoS3 | None = None, **options: object) -> FetchContext:
    storage = {"s3": s3.storage_options} if s3 else {}
    return FetchContext(Settings(storage_options=storage, **options), dest_dir=tmp_path / "work")


def ref(url: str) -> MediaRef:
    return MediaRef(role="audio_1", field="wav_url", via="url", value=url)


# --- S3 through moto -------------------------------------------------------------------------------


def test_fetches_a_wav_from_s3(tmp_path, s3, bucket, wav):
    s3.filesystem().pipe(f"{bucket}/in/voice.wav", wav)
    ctx = make_ctx(tmp_path, s3)
    path = FsspecSource().fetch(ref(f"s3://{bucket}/in/voice.wav"), ctx)
    assert path == ctx.dest_dir / "input_audio_1"
    assert path.read_bytes() == wav


@pytest.mark.parametrize("key", ["in/missing.wav", "../other-bucket/x.wav"])
def test_missing_s3_key_is_unreadable(tmp_path, s3, bucket, key):
    ctx = make_ctx(tmp_path, s3)
    with pytest.raises(MediaUnreadable) as exc:
        FsspecSource().fetch(ref(f"s3://{bucket}/{key}"), ctx)
    assert_refused(exc, ctx, "media_unreadable", "wav_url")
    assert "not found" in exc.value.message


def test_missing_bucket_is_unreadable(tmp_path, s3):
    ctx = make_ctx(tmp_path, s3)
    with pytest.raises(MediaUnreadable) as exc:
        FsspecSource().fetch(ref("s3://talkgen-no-such-bucket/voice.wav"), ctx)
    assert_refused(exc, ctx, "media_unreadable", "wav_url")


def test_an_s3_prefix_is_not_a_file(tmp_path, s3, bucket, wav):
    s3.filesystem().pipe(f"{bucket}/in/voice.wav", wav)
    ctx = make_ctx(tmp_path, s3)
    with pytest.raises(MediaUnreadable) as exc:
        FsspecSource().fetch(ref(f"s3://{bucket}/in"), ctx)
    assert_refused(exc, ctx, "media_unreadable", "wav_url")
    assert "not a file" in exc.value.message


def test_s3_object_over_the_cap_is_refused(tmp_path, s3, bucket):
    s3.filesystem().pipe(f"{bucket}/big.bin", b"\0" * 1001)
    ctx = make_ctx(tmp_path, s3, max_download_mb=0.001)
    with pytest.raises(MediaTooLarge) as exc:
        FsspecSource().fetch(ref(f"s3://{bucket}/big.bin"), ctx)
    assert_refused(exc, ctx, "media_too_large", "wav_url")


def test_denied_credentials_are_forbidden(tmp_path, s3, bucket, wav):
    s3.filesystem().pipe(f"{bucket}/voice.wav", wav)
    ctx = make_ctx(tmp_path, s3)
    s3.enforce_auth()
    try:
        with pytest.raises(ForbiddenSource) as exc:
            FsspecSource().fetch(ref(f"s3://{bucket}/voice.wav?versionId=SECRET"), ctx)
    finally:
        s3.enforce_auth(False)
    assert_refused(exc, ctx, "forbidden_source", "wav_url")
    assert "TALKGEN_STORAGE_OPTIONS" in exc.value.message
    assert "SECRET" not in exc.value.message


def test_missing_s3_driver_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.delitem(importlib.import_module("fsspec.registry")._registry, "s3", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    ctx = make_ctx(tmp_path)
    with pytest.raises(UnsupportedMedia) as exc:
        FsspecSource().fetch(ref("s3://bucket/voice.wav"), ctx)
    assert_refused(exc, ctx, "unsupported_media", "wav_url")
    assert "pip install 'talkgen[s3]'" in exc.value.message


def test_missing_driver_for_another_protocol_names_it(tmp_path):
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    ctx = make_ctx(tmp_path)
    with pytest.raises(UnsupportedMedia) as exc:
        FsspecSource().fetch(ref("gs://bucket/voice.wav"), ctx)
    assert_refused(exc, ctx, "unsupported_media", "wav_url")
    assert "gcsfs" in exc.value.message


# --- memory:// -------------------------------------------------------------------------------------


def test_fetches_from_memory(tmp_path, memory, wav):
    memory.pipe("/talkgen/voice.wav", wav)
    assert FsspecSource().fetch(ref("memory://talkgen/voice.wav"), make_ctx(tmp_path)).read_bytes() == wav


def test_memory_store_is_empty_for_each_test(tmp_path, memory):
    ctx = make_ctx(tmp_path)
    with pytest.raises(MediaUnreadable) as exc:
        FsspecSource().fetch(ref("memory://talkgen/voice.wav"), ctx)
    assert_refused(exc, ctx, "media_unreadable", "wav_url")


def test_cancel_leaves_no_file(tmp_path, memory, wav):
    memory.pipe("/talkgen/voice.wav", wav)
    ctx = make_ctx(tmp_path)
    ctx.cancel.set()
    with pytest.raises(Cancelled) as exc:
        FsspecSource().fetch(ref("memory://talkgen/voice.wav"), ctx)
    assert_refused(exc, ctx, "cancelled", "wav_url")


# --- which URLs, and refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "memory://talkgen/a.wav::file:///etc/passwd",  # chained URL reading a local file
        "tar://etc/passwd::file:///tmp/x.tar",
        "zip://a.wav",
        "simplecache://a.wav",
        "ftp://127.0.0.1/a.wav",  # reaches any host: only with TALKGEN_ALLOW_PRIVATE_URLS
    ],
)
def test_local_file_and_any_host_protocols_are_refused(tmp_path, memory, url):
    ctx = make_ctx(tmp_path)
    assert FsspecSource().handles(ref(url))
    with pytest.raises(ForbiddenSource) as exc:
        FsspecSource().fetch(ref(url), ctx)
    assert_refused(exc, ctx, "forbidden_source", "wav_url")


@pytest.mark.parametrize(
    ("url", "handled"),
    [
        ("s3://b/k.wav", True), ("gs://b/k.wav", True), ("az://c/k.wav", True),
        ("hf://datasets/x/k.wav", True), ("memory://k.wav", True), ("http://h/k.wav", False),
        ("https://h/k.wav", False), ("file:///k.wav", False), ("data:audio/wav;base64,AAAA", False),
        ("nosuch://k.wav", False), ("/k.wav", False),
    ],
)
def test_handles_storage_urls_only(url, handled):
    assert FsspecSource().handles(ref(url)) is handled
    assert not FsspecSource().handles(MediaRef(role="audio_1", field="wav_path", via="path", value=url))


def test_registry_routes_storage_urls_here(monkeypatch):
    use_builtin_sources_only(monkeypatch)
    assert pick_source(ref("s3://b/k.wav")).name == "fsspec"
    assert pick_source(ref("https://h/k.wav")).name == "url"


@pytest.mark.parametrize(("private", "link_local", "refused"),
                         [(True, False, True), (False, True, True), (True, True, False)])
def test_any_host_protocols_need_private_and_link_local_hosts_allowed(tmp_path, private, link_local, refused):
    """ftp:// and the like connect to the host they name unchecked: it could be 169.254.169.254."""
    from talkgen.sources.fsspec import _check_allowed

    ctx = make_ctx(tmp_path)
    ctx.settings = ctx.settings.model_copy(update={"allow_private_urls": private,
                                                   "allow_link_local_urls": link_local})
    if refused:
        with pytest.raises(ForbiddenSource):
            _check_allowed(ref("ftp://169.254.169.254/a.wav"), "ftp", ctx)
    else:
        _check_allowed(ref("ftp://169.254.169.254/a.wav"), "ftp", ctx)


def test_a_storage_endpoint_that_never_answers_fails_within_the_url_timeouts(tmp_path, monkeypatch):
    """botocore would wait 60 s per read, 5 times, under each of s3fs's own 5 tries."""
    pytest.importorskip("s3fs")
    import socket
    import threading
    import time

    credentials = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(64)], daemon=True).start()
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    ctx = make_ctx(tmp_path, url_read_timeout_s=0.5, url_connect_timeout_s=0.5)
    ctx.settings = ctx.settings.model_copy(update={"storage_options": {"s3": {"endpoint_url": endpoint}}})
    started = time.monotonic()
    try:
        with pytest.raises(FetchFailed) as exc:
            FsspecSource().fetch(ref("s3://bucket/never.wav"), ctx)
    finally:
        silent.close()
    assert exc.value.retryable and time.monotonic() - started < 60
