"""Fuzzing the request schema and the sources: every outcome is a coded error or a video.

Requests mix a valid base with hostile values for every field of `TalkRequest` (NUL bytes, huge and
unicode strings, upper-case and unknown protocols, `::` chains, wrong types, huge / NaN / infinite
numbers, nested structures) and media references that reach real loopback servers answering with
garbage, gzip, 404, 500, truncated bodies and closed connections. They run through `TalkGen.validate`
and through the RunPod handler in-process (test engine, tiny media), which must never raise, never
answer `internal_error`, never put a traceback or an unbounded echo in a message, and leave nothing
behind. Deterministic: ``derandomize=True`` and fixed example counts.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkgen.errors import ERROR_CODES, MESSAGE_LIMIT, TalkgenError
from talkgen.request import TalkRequest
from tests.support.http_server import LoopbackServer, Reply
from tests.support.media_factory import make_image, make_wav

pytest.importorskip("runpod")

FIELDS = sorted(TalkRequest.model_fields)
ROUTES = ["/ok.wav", "/ok.png", "/garbage", "/gzip.wav", "/badgzip", "/404", "/500", "/short", "/html",
          "/to-ok", "/to-metadata", "/empty"]


@dataclass
class World:
    """What the strategies point at: media files, loopback peers, output places (set by the fixture)."""

    media: Path = Path("/nonexistent")
    outputs: Path = Path("/nonexistent")
    server: LoopbackServer | None = None
    closer_port: int = 9
    wav_b64: str = ""


WORLD = World()


def _url(route: str) -> str:
    assert WORLD.server is not None
    return WORLD.server.url(route)


# ---- value strategies ---------------------------------------------------------------------------------
ODD_STRINGS = [
    "", " ", "\x00", "a\x00b", "\ud800", "é" * 20, "🙂" * 10, "x" * 100_000, "/x" * 50_000, "%00", "1e400", "NaN",
    "MEMORY://voice.wav", "S3://bucket/key.wav", "s3://", "s3:///", "dbfs://ws/a.wav", "github://o/r/a.wav",
    "gs://bucket/a.wav", "az://c/a.wav", "hf://datasets/x/a.wav", "nosuchproto://x/a.wav", "s3::memory://a.wav",
    "simplecache::s3://b/k", "zip://a.wav::file:///etc/passwd", "::", "://", "::::", "file:///etc/passwd",
    "FILE:///etc/passwd", "local:///etc/passwd", "/etc/passwd", "../../etc/passwd", "~root/.bashrc",
    "data:", "data:audio/wav;base64,", "data:;base64,AAAA", "data:audio/wav;base64,@@@@", "AAAA", "====",
    "http://169.254.169.254/latest/meta-data/", "HTTP://127.0.0.1:9/a.wav", "http://[::1]:9/a.wav",
    "ftp://127.0.0.1/a.wav", "http://user:pass@127.0.0.1:9/a.wav", "https://127.0.0.1:9/a.wav",
    "480p", "720p", "para", "add", "image", "video", "single", "multi", "test-bars", "native", "job-1",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 127, 128, 1920, 1921, 2**31, 2**32, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-9, 0.04, 0.039, 1e308]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30), st.sampled_from(ODD_STRINGS))
NESTED = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=10)
DEEP = st.integers(min_value=50, max_value=3000).map(lambda depth: _deep(depth))


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _local_media(name: str) -> str:
    return str(WORLD.media / name)


PATH_VALUES = st.sampled_from(["face.png", "speech.wav", "clip.mp4", "missing.wav", "dir", "link-out"]).map(
    _local_media)
URL_VALUES = st.one_of(
    st.sampled_from(ROUTES).map(_url),
    st.sampled_from(ROUTES).map(lambda route: _url(route).replace("http://", "HTTP://")),
    st.just(None).map(lambda _: f"http://127.0.0.1:{WORLD.closer_port}/closed.wav"),
    st.sampled_from(["MEMORY://voice.wav", "S3://bucket/key.wav", "dbfs://ws/a.wav", "s3::memory://a.wav",
                     "nosuchproto://x/a.wav", "memory://missing.wav"]),
)
BASE64_VALUES = st.one_of(
    st.just(None).map(lambda _: f"data:audio/wav;base64,{WORLD.wav_b64}"),
    st.just(None).map(lambda _: WORLD.wav_b64),
    st.just(None).map(lambda _: WORLD.wav_b64[: len(WORLD.wav_b64) // 2]),
    st.sampled_from(["data:image/png;base64,AAAA", "data:audio/wav;base64,@@", "=" * 8, "AAAA" * 1000]),
)
MEDIA_VALUES = st.one_of(PATH_VALUES, URL_VALUES, BASE64_VALUES)
BY_KIND = {"path": PATH_VALUES, "url": URL_VALUES, "base64": BASE64_VALUES}
OUTPUT_VALUES = st.one_of(
    st.sampled_from(["", "sub/", "x.mp4", "deep/er/x.mp4", "taken.mp4", "../escape.mp4"]).map(
        lambda rel: str(WORLD.outputs / rel)),
    st.sampled_from(["file:///tmp/talkgen-fuzz-escape.mp4", "/tmp/talkgen-fuzz-escape.mp4", "s3://bucket/out/",
                     "S3://bucket/out.mp4", "MEMORY://out/", "gs://bucket/x.mp4", "s3::memory://x.mp4"]),
)
ANY_VALUE = st.one_of(SCALARS, NESTED, DEEP, MEDIA_VALUES, OUTPUT_VALUES)
FIELD_VALUES = st.one_of(
    st.tuples(st.sampled_from(FIELDS), ANY_VALUE),
    st.tuples(st.sampled_from([f for f in FIELDS if f.endswith(("_path", "_url", "_2", "_base64"))]),
              MEDIA_VALUES),
    st.tuples(st.just("output_url"), OUTPUT_VALUES),
    st.tuples(st.one_of(st.text(max_size=12), st.sampled_from(["widht", "x" * 10_000, "\ud800", "input"])),
              SCALARS),
)


ROLE_FIELDS = [("image_path", "image_url", "image_base64"), ("video_path", "video_url", "video_base64"),
               ("wav_path", "wav_url", "wav_base64"), ("wav_path_2", "wav_url_2", "wav_base64_2")]
SOURCE_VALUES = st.one_of(MEDIA_VALUES, MEDIA_VALUES, MEDIA_VALUES, st.sampled_from(ODD_STRINGS), SCALARS)


def _swap(draw: st.DrawFn, request: dict[str, Any]) -> None:
    """Replace one media role's source (mostly a role the mode uses) with a value reaching a peer or file."""
    used = [fields for fields in ROLE_FIELDS if any(request.get(f) for f in fields)]
    fields = draw(st.sampled_from(used if draw(st.integers(0, 4)) else ROLE_FIELDS))
    kind = draw(st.sampled_from(["path", "url", "url", "base64"]))
    chosen = fields[["path", "url", "base64"].index(kind)]
    value = draw(BY_KIND[kind] if draw(st.integers(0, 3)) else SOURCE_VALUES)
    request.update({**dict.fromkeys(fields), chosen: value})


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid small request of a random mode, with 0-2 sources swapped and 0-4 fields replaced or removed."""
    request: dict[str, Any] = {"image_path": _local_media("face.png"), "wav_path": _local_media("speech.wav"),
                               "width": 128, "height": 128}
    if draw(st.booleans()):
        request.update(person_count="multi", wav_path_2=_local_media("speech.wav"))
    if draw(st.integers(0, 3)) == 0:
        request.update(input_type="video", video_path=_local_media("clip.mp4"))
        del request["image_path"]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        _swap(draw, request)
    for name, value in draw(st.lists(FIELD_VALUES, max_size=draw(st.sampled_from([0, 0, 1, 4])))):
        request[name] = value
    request = {k: v for k, v in request.items() if v is not None or draw(st.integers(0, 9)) == 0}
    if draw(st.integers(0, 7)) == 0:
        request.pop(draw(st.sampled_from(sorted(request))), None)
    return request


def _as_json_text(request: dict[str, Any]) -> str:
    try:
        return json.dumps(request)
    except (ValueError, RecursionError):
        return "{" * 5000


JOBS = st.one_of(
    *[requests().map(lambda r: {"id": "fuzz", "input": r})] * 8,
    requests().map(lambda r: {"id": "fuzz", "input": _as_json_text(r)}),
    st.sampled_from([None, "text", [], {"input": None}, {"input": 5}, {"id": 10**400, "input": {}}]),
    st.integers(1, 200_000).map(lambda n: {"input": "[" * n + "]" * n}),
)


# ---- the world --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _closing_listener() -> Iterator[int]:
    """A TCP port that accepts connections and closes them at once, sending nothing."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    media, outputs, outside = root / "media", root / "outputs", root / "outside"
    for d in (media, outputs, outside, media / "dir"):
        d.mkdir()
    make_image(media / "face.png", 64, 64)
    wav = make_wav(media / "speech.wav", seconds=0.2).read_bytes()
    from tests.support.media_factory import make_video

    make_video(media / "clip.mp4", seconds=0.2, fps=25, width=64, height=64)
    (media / "link-out").symlink_to("/etc/hostname")
    (outputs / "taken.mp4").mkdir()
    png = (media / "face.png").read_bytes()
    server = LoopbackServer()
    server.route("/ok.wav", Reply.file(wav, "audio/wav"))
    server.route("/ok.png", Reply.file(png, "image/png"))
    server.route("/garbage", Reply.file(bytes(range(256)) * 64))
    server.route("/gzip.wav", Reply(body=gzip.compress(wav), headers={"Content-Encoding": "gzip"}))
    server.route("/badgzip", Reply(body=b"\x1f\x8b\x08\x00garbage" * 100, headers={"Content-Encoding": "gzip"}))
    server.route("/404", Reply.error(404))
    server.route("/500", Reply.error(500))
    server.route("/short", Reply(body=lambda: [b"RIFF"], headers={"Content-Length": "100000"}))
    server.route("/html", Reply.file(b"<html>hello</html>", "text/html"))
    server.route("/to-ok", Reply.redirect("/ok.wav"))
    server.route("/to-metadata", Reply.redirect("http://169.254.169.254/latest/meta-data/"))
    server.route("/empty", Reply.file(b""))
    with server, _closing_listener() as closer_port:
        WORLD.media, WORLD.outputs, WORLD.server, WORLD.closer_port = media, outputs, server, closer_port
        WORLD.wav_b64 = base64.b64encode(wav).decode()
        yield WORLD
    assert list(outside.iterdir()) == []


@pytest.fixture(scope="module")
def services(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two warm services, private URLs allowed (real loopback fetches) and refused, sharing one work root."""
    from talkgen.service import TalkGen
    from talkgen.settings import Settings

    work = tmp_path_factory.mktemp("fuzz-work")
    down = {"key": "k", "secret": "s", "skip_instance_cache": True,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    base = dict(engine="test-bars", allowed_path_roots=[world.media], work_dir=work, output_roots=[world.outputs],
                volume_dir=work.parent / "no-volume", url_retries=0, url_connect_timeout_s=1, url_read_timeout_s=1,
                download_timeout_s=5, storage_options={"s3": down}, max_duration_s=30)
    made = {"open": TalkGen(Settings(**base, allow_private_urls=True)), "closed": TalkGen(Settings(**base))}
    yield {"work": work, **made}
    for tg in made.values():
        tg.close()


# ---- settings -------------------------------------------------------------------------------------------
def fuzz(examples: int) -> settings:
    """Deterministic runs of a fixed size (CI sees the same examples every time)."""
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- checks --------------------------------------------------------------------------------------------------
def _check_error(code: str, message: str, retryable: object) -> None:
    assert code in ERROR_CODES, code
    assert code != "internal_error", message
    assert isinstance(retryable, bool)
    assert "Traceback" not in message and 'File "' not in message
    assert len(message) <= MESSAGE_LIMIT + 100


def _clean(work: Path) -> None:
    left = list(work.iterdir())
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    assert left == [], f"left behind: {left}"


@fuzz(400)
@given(request=requests())
def test_validate_answers_every_request_with_a_request_or_a_coded_error(services, request: dict[str, Any]) -> None:
    try:
        services["open"].validate(request)
    except TalkgenError as exc:
        _check_error(exc.code, exc.message, exc.retryable)


@fuzz(800)
@given(job=JOBS, private_allowed=st.booleans())
def test_the_runpod_handler_never_raises_and_never_blames_itself(services, monkeypatch_module, job: Any,
                                                                 private_allowed: bool) -> None:
    from talkgen.runtimes import runpod as rp

    monkeypatch_module.setattr(rp, "_service", services["open" if private_allowed else "closed"])
    out = rp.handler(job)
    assert isinstance(out, dict)
    if "error" in out:
        _check_error(out["error_code"], out["error"], out["retryable"])
    else:
        assert out.get("video") or out.get("video_path") or out.get("video_url"), out
        if out.get("video_path"):
            assert out["video_path"].startswith(str(WORLD.outputs) + "/"), out["video_path"]
    _clean(services["work"])
    assert not Path("/tmp/talkgen-fuzz-escape.mp4").exists()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """Module-wide monkeypatching (hypothesis reuses one fixture value for all examples)."""
    import runpod

    patch = pytest.MonkeyPatch()
    patch.setattr(runpod.serverless, "progress_update", lambda job, progress: None)
    yield patch
    patch.undo()
