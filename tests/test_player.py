"""examples/player.html plays a growing HLS playlist in a real headless Chromium.

Needs a Chromium (Debian: ``apt-get install -y chromium``; or TALKGEN_TEST_CHROMIUM=<binary>) and hls.js (npm's
``hls.js`` package, fetched with ``npm pack`` at test time; or TALKGEN_TEST_HLS_JS=<hls.min.js>); skips with the
reason otherwise. The page, hls.js and the playlist come from one loopback server; nothing reaches the internet.
The browser is driven over the Chrome DevTools protocol (websocket-client). Each run saves a screenshot of the
playing page in the test's temp dir (and in $TALKGEN_TEST_ARTIFACTS when set) and prints its path (pytest -s).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.conftest import REPO

HLS_JS_VERSION = "1.7.4"
SEGMENT_S = 2
FPS = 25
SIZE = (320, 240)
RATE = 48000
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


# ---------------------------------------------------------------------------------------------------------
# What the test needs from the machine.
@pytest.fixture(scope="module")
def chromium() -> str:
    given = os.environ.get("TALKGEN_TEST_CHROMIUM")
    found = given or next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if not found:
        pytest.skip("no Chromium installed (Debian: apt-get install -y chromium; or set TALKGEN_TEST_CHROMIUM)")
    return found


@pytest.fixture(scope="module")
def hls_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hls.min.js from the npm package (``npm pack hls.js@<version>``), unpacked in a temp dir."""
    given = os.environ.get("TALKGEN_TEST_HLS_JS")
    if given:
        return Path(given)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot fetch hls.js (or set TALKGEN_TEST_HLS_JS=<hls.min.js>)")
    where = tmp_path_factory.mktemp("hls-js")
    try:
        packed = subprocess.run([npm, "pack", f"hls.js@{HLS_JS_VERSION}", "--silent"], cwd=where,
                                capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip("npm pack hls.js took over 180 s (no registry access?)")
    tarballs = list(where.glob("hls.js-*.tgz"))
    if packed.returncode != 0 or not tarballs:
        pytest.skip(f"npm pack hls.js@{HLS_JS_VERSION} failed: {(packed.stderr or packed.stdout)[-500:]}")
    with tarfile.open(tarballs[0]) as tar:
        member = tar.getmember("package/dist/hls.min.js")
        tar.extractall(where, members=[member], filter="data")
    return where / "package" / "dist" / "hls.min.js"


# ---------------------------------------------------------------------------------------------------------
# Media: H.264 + AAC MPEG-TS segments, each its own file starting on a keyframe, timestamps continuous.
def write_segment(path: Path, index: int) -> None:
    import av
    import numpy as np

    frames = SEGMENT_S * FPS
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.codec_context.time_base = Fraction(1, FPS)
        video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(frames)}
        audio = out.add_stream("aac", rate=RATE, layout="mono")
        first = index * frames
        for n in range(frames):
            t = first + n
            image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
            image[:, :] = ((40 * index) % 256, 90, 160)
            x = (t * 4) % SIZE[0]
            image[:, x:x + 12] = 255  # a moving bar: the screenshot shows a frame mid-stream
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        samples_per_chunk = 1024
        total = SEGMENT_S * RATE
        start = index * total
        for offset in range(0, total, samples_per_chunk):
            n = min(samples_per_chunk, total - offset)
            t = (start + offset + np.arange(n)) / RATE
            tone = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start + offset, Fraction(1, RATE)
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)


def write_playlist(directory: Path, count: int, *, ended: bool) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{SEGMENT_S}", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:EVENT"]
    for i in range(count):
        lines += [f"#EXTINF:{SEGMENT_S:.3f},", f"segment-{i:05d}.ts"]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    tmp = directory / "playlist.m3u8.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(directory / "playlist.m3u8")  # readers never see half a playlist


class _Handler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map, ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t",
        ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".js": "text/javascript", ".html": "text/html"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # a live playlist must be re-read, never cached
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, hls_js: Path) -> Iterator[tuple[str, Path]]:
    """A loopback server for the page, hls.js and a stream directory; (base URL, stream dir)."""
    root = tmp_path / "site"
    stream = root / "job.hls"
    stream.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "player.html", root / "player.html")
    (root / "vendor").mkdir()
    shutil.copy(hls_js, root / "vendor" / "hls.min.js")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", stream
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------------------------------------------------
# A minimal Chrome DevTools protocol client.
class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--disable-background-networking",
             "--disable-component-update", "--disable-features=Translate,MediaRouter", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "--window-size=800,700",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited ({self.proc.returncode}): {self.proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium did not open its DevTools port in 60 s")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        import httpx

        targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", trust_env=False, timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        import websocket

        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("method") == "Runtime.consoleAPICalled":
                self.log.append(" ".join(str(a.get("value", a.get("description", ""))) for a in
                                         message["params"].get("args", [])))
            elif message.get("method") == "Runtime.exceptionThrown":
                self.log.append(str(message["params"]["exceptionDetails"].get("exception", {}).get("description")))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    pytest.importorskip("websocket", reason="websocket-client (the comfyui extra) drives the browser")
    try:
        opened = Browser(chromium, tmp_path / "profile")
    except RuntimeError as exc:
        pytest.skip(f"Chromium does not start here: {exc}")
    try:
        yield opened
    finally:
        opened.close()


PLAYER_STATE = """(() => { const v = document.getElementById('video'); const p = window.talkgenPlayer || {};
  if (!v || !location.pathname.endsWith('player.html')) { return {readyState: -1, currentTime: 0, error: null}; }
  return {readyState: v.readyState, currentTime: v.currentTime, paused: v.paused, duration: v.duration,
          error: p.error || (v.error && v.error.code) || null, engine: p.engine, ended: !!p.ended,
          segments: p.segments || 0, status: document.getElementById('status').textContent}; })()"""


def wait_for(browser: Browser, check: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = browser.evaluate(PLAYER_STATE)
        except RuntimeError as exc:  # asked while the page was being replaced (navigation): ask again
            state = {"evaluate": str(exc)[:500]}
        else:
            assert not state["error"], f"{state} {browser.log[-5:]}"
            if check(state):
                return state
        assert time.monotonic() < deadline, f"{what}: still {state}; console {browser.log[-10:]}"
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["hls.js", "auto"])
def test_player_plays_a_growing_playlist(site: tuple[str, Path], browser: Browser, tmp_path: Path,
                                         engine: str) -> None:
    base, stream = site
    total = 3
    url = f"{base}/player.html?src=job.hls/playlist.m3u8&hls=vendor/hls.min.js&engine={engine}"
    browser.call("Page.navigate", url=url)  # opened before the job wrote anything: the page keeps asking
    wait_for(browser, lambda s: "waiting for the playlist" in s.get("status", ""), "wait for the playlist")
    for i in range(total):
        write_segment(stream / f"segment-{i:05d}.ts", i)
    write_playlist(stream, 1, ended=False)  # a job that has rendered its first window so far

    started = wait_for(browser, lambda s: s["readyState"] >= 3 and s["currentTime"] > 0.2, "start playing")
    assert started["engine"] == "native" or started["engine"].startswith("hls.js"), started
    assert not started["ended"] or started["engine"] == "native"  # EVENT playlist without ENDLIST: still live
    write_playlist(stream, total, ended=True)  # the rest of the job: more segments, then the end
    later = wait_for(browser, lambda s: s["currentTime"] > SEGMENT_S + 0.5, "play past the first segment",
                     timeout=90)
    assert later["currentTime"] > started["currentTime"]  # time advances across segments
    if later["engine"].startswith("hls.js"):
        done = wait_for(browser, lambda s: s["ended"], "see the end of the stream")
        assert done["segments"] >= 2

    shot = browser.call("Page.captureScreenshot", format="png")
    path = tmp_path / f"player-{engine}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    keep = os.environ.get("TALKGEN_TEST_ARTIFACTS")  # CI: keep the screenshot beyond pytest's temp dirs
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(path, Path(keep) / path.name))
    print(f"player screenshot ({engine}, {later['engine']}): {path}")


def test_player_refuses_a_foreign_hls_script(site: tuple[str, Path], browser: Browser) -> None:
    base, stream = site
    write_segment(stream / "segment-00000.ts", 0)
    write_playlist(stream, 1, ended=True)
    browser.call("Page.navigate", url=f"{base}/player.html?src=job.hls/playlist.m3u8&engine=hls.js"
                                      "&hls=http://198.51.100.1/evil.js")
    deadline = time.monotonic() + 20
    while not (state := browser.evaluate(PLAYER_STATE))["error"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert "own server" in state["error"] and state["engine"] is None


def test_player_plays_a_talkgen_job_while_it_renders(site: tuple[str, Path], browser: Browser, service,  # type: ignore[no-untyped-def]
                                                     media_dir: Path, tmp_path: Path, _fresh_plugins: None) -> None:
    """The segments and playlist talkgen's own segmenter writes: the page plays the first window while the job
    is held after it, then plays on to the end once the job finishes."""
    from tests.support.media_factory import make_wav
    from tests.test_runpod_stream import WINDOWED, use_windowed_bars

    use_windowed_bars()
    base, stream = site
    make_wav(media_dir / "long.wav", seconds=7.0, freq=200.0)  # 3 windows: 3.24 s, 2.88 s, 0.88 s
    first_segment, release = threading.Event(), threading.Event()
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == 1:
            first_segment.set()
            release.wait(120)

    request = {"image_path": str(media_dir / "face.png"), "wav_path": str(media_dir / "long.wav"), "width": 128,
               "height": 128, "engine": WINDOWED}
    outcome: dict[str, Any] = {}
    job = threading.Thread(target=lambda: outcome.update(result=service.generate(
        request, output=str(tmp_path / "job.mp4"), stream_dir=stream, on_event=on_event)), daemon=True)
    job.start()
    try:
        assert first_segment.wait(60), outcome
        assert (stream / "playlist.m3u8").read_text().count("#EXTINF") == 1
        browser.call("Page.navigate", url=f"{base}/player.html?src=job.hls/playlist.m3u8&hls=vendor/hls.min.js")
        started = wait_for(browser, lambda s: s["readyState"] >= 3 and s["currentTime"] > 0.5, "play window 1")
        assert started["engine"].startswith("hls.js") and not started["ended"]
        shot = browser.call("Page.captureScreenshot", format="png")
        path = tmp_path / "player-talkgen-job.png"
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        release.set()
        job.join(60)
    assert outcome["result"].segments == 3 and [e["window"] for e in events] == [0, 1, 2]
    done = wait_for(browser, lambda s: s["ended"] and s["currentTime"] > 3.6, "play into window 2", timeout=90)
    assert done["segments"] >= 2
    keep = os.environ.get("TALKGEN_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(path, Path(keep) / path.name))
    print(f"player screenshot (a talkgen job while it renders): {path}")
