"""Hostile requests about inputs and outputs: paths, protocols, base64, media, HTTP, S3, output_url.

Same shape as hostile_cases.py. An input under test is paired with a wav that is not audio when only
the fetch matters, and with valid media when the hostile file itself must be opened (``costly``: if
talkgen accepts it, the engine runs).
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

from hostile_cases import BIG, DEFAULT, DROP, PRIVATE, S3_DOWN, Case, cheap, job


def _img(env: dict[str, Any], key: str, value: str, **more: Any) -> dict[str, Any]:
    """The cheap request with its image replaced by ``key=value``."""
    return job(cheap(env, **{"image_path": DROP, key: value, **more}))


def _wav(env: dict[str, Any], key: str, value: str, **more: Any) -> dict[str, Any]:
    """The cheap request with its wav replaced by ``key=value``."""
    return job(cheap(env, **{"wav_path": DROP, key: value, **more}))


def paths(env: dict[str, Any], rng: random.Random) -> list[Case]:
    m, d = env["media"], env["media_dir"]
    image = {name: m[name] for name in ("link_passwd", "link_outside_file", "link_dangling", "link_loop", "link_proc",
                                        "directory", "png_as_wav")}
    image.update({
        "link into outside dir": f"{m['link_outside_dir']}/secret.png",
        "dotdot to outside": f"{d}/../outside/secret.png",
        "dotdot to /etc": f"{d}/../../../../../../etc/passwd", "double slashes": f"{d}//..//..//etc/passwd",
        "percent-encoded": f"{d}/%2e%2e/%2e%2e/etc/passwd", "trailing dotdot": f"{m['portrait']}/..",
        "root": "/", "allowed root itself": d, "//etc": "//etc/passwd", "missing": f"{d}/missing.png",
        "outside exists": env["outside"] + "/secret.png",
    })
    cases = [Case("path", name, _img(env, "image_path", value)) for name, value in image.items()]
    cases.append(Case("path", "FIFO as wav", _wav(env, "wav_path", m["fifo"], image_path=m["portrait"]),
                      costly=True, timeout_s=15))
    return cases


PROTOCOL_URLS = [
    "MEMORY://x.png", "memory://x.png", "memory://", "S3://hostile/portrait.png", "s3a://hostile/portrait.png",
    "dbfs://x.png", "DBFS://x.png", "file::s3://hostile/portrait.png", "simplecache::s3://hostile/portrait.png",
    "zip://a.png::file:///etc/passwd", "tar://x::memory://y", "blockcache::memory://x", "reference://",
    "local:///etc/passwd", "file:///etc/passwd", "FILE:///etc/passwd", "data:image/png;base64,AAAA",
    "ftp://127.0.0.1:1/x", "sftp://127.0.0.1:1/x", "smb://127.0.0.1/x", "webhdfs://127.0.0.1:1/x", "hdfs://127.0.0.1:1/x",
    "github://org:repo@sha/x.png", "git://x", "unknownproto://x", "://x", "s3://", "s3:///x", "s3://hostile",
    "s3://hostile/", "http://", "https://", "http:///x", "http://127.0.0.1:99999/x", "http://[::1", "http://a b.png",
    "HTTP://127.0.0.1:1/x", "javascript:alert(1)", "jar:file:///x!/", "ssh://127.0.0.1/x", "dask://127.0.0.1:1/x",
    "jupyter://127.0.0.1:1/x", "root://127.0.0.1//x", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/", "http://0/", "http://2130706433/", "http://0x7f.1/", "http://localhost./",
]


def protocols(env: dict[str, Any], rng: random.Random) -> list[Case]:
    return [Case("protocol", url[:48], _img(env, "image_url", url)) for url in PROTOCOL_URLS]


def output_urls(env: dict[str, Any], rng: random.Random) -> list[Case]:
    out = env["out_dir"]
    urls = [
        "x.mp4\x00", f"{out}/x\x00.mp4", "file:///etc/x.mp4", "/etc/x.mp4", "x.mp4", f"{out}/../escape.mp4",
        f"{out}/link_out/x.mp4", f"file://{out}/link_out/x.mp4", "memory://x.mp4", "MEMORY://x.mp4", "S3://hostile/x.mp4",
        "file::s3://hostile/x.mp4", "simplecache::s3://hostile/x.mp4", "http://127.0.0.1:1/x.mp4", "ftp://127.0.0.1/x",
        "", " ", "/", f"{out}/", f"{out}/" + "a" * 5000 + ".mp4", "s3://hostile/" + "b" * BIG, "s3://", "dbfs://x",
        "~/x.mp4", f"{out}/existing-dir", "s3://hostile/x\ud800.mp4", "gs://", "az://x/y", "s3://hostile/../../x.mp4",
    ]
    return [Case("output_url", repr(u)[:48], job(cheap(env, output_url=u))) for u in urls]


def _b64(path: Path | str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def base64s(env: dict[str, Any], rng: random.Random) -> list[Case]:
    m = env["media"]
    png = _b64(m["portrait"])
    values = {
        "garbage": "!!!!", "short padding": "abc", "bad padding": "abc=", "only padding": "====", "blank": " ",
        "newlines inside": "\n".join(png[i:i + 60] for i in range(0, len(png), 60)), "url-safe": png.replace("+", "-"),
        "spaces everywhere": " ".join(png), "text/plain data URI": "data:text/plain;base64," + png,
        "data URI not base64": "data:image/png," + png, "data URI empty": "data:;base64,",
        "data URI no comma": "data:image/png;base64", "data URI commas": "data:image/png;base64,,,,",
        "audio mime for image": "data:audio/wav;base64," + png, "upper-case data URI": "DATA:IMAGE/PNG;BASE64," + png,
        "header-only 60000² PNG": _b64(m["png_header_only"]), "not media": _b64(m["notmedia_png"]), "empty file": "",
        "gzipped PNG": _b64(m["gzip_png"]), "3 MB @": "@" * BIG, "3 MB of A": "A" * BIG, "embedded NUL": png[:100] +
        "\x00" + png[100:], "non-ASCII": png[:100] + "ü" + png[100:], "data after padding": "AAAA====AAAA",
        "double-encoded": base64.b64encode(png.encode()).decode(), "surrogate": "AAAA\ud800",
    }
    cases = [Case("base64", name, _img(env, "image_base64", v)) for name, v in values.items()]
    real = {"wav_path": m["speech"]}
    cases += [
        Case("base64", "PNG bomb 30000²", _img(env, "image_base64", _b64(m["png_bomb"]), **real), costly=True),
        Case("base64", "wav: 4000 s FLAC", _wav(env, "wav_base64", _b64(m["long_flac"]), max_frame=DROP), costly=True,
             expect=("too_long",)),
        Case("base64", "wav: garbage", _wav(env, "wav_base64", "data:audio/wav;base64,////")),
        Case("base64", "wav: PNG", _wav(env, "wav_base64", png)),
    ]
    return cases


IMAGE_MEDIA = ["notmedia_png", "empty_png", "trunc_png", "png_bomb", "png_header_only", "png_zero_size", "mp3_as_png",
               "zip_as_png", "random_png", "gzip_png", "notmedia_jpg", "empty_jpg", "big_frames"]
AUDIO_MEDIA = ["notmedia_wav", "empty_wav", "empty_flac", "notmedia_flac", "long_flac", "png_as_wav", "wav_rate_zero",
               "wav_channels_max", "wav_header_only", "wav_rate_huge", "mp4_tail", "trunc_mp4", "video", "wav_lie_size"]
VIDEO_MEDIA = ["big_frames", "trunc_mp4", "mp4_tail", "notmedia_mp4", "empty_mp4", "audio_only_m4a", "portrait",
               "png_bomb"]


def media(env: dict[str, Any], rng: random.Random) -> list[Case]:
    """Each hostile file in the role it claims, next to valid partners."""
    m = env["media"]
    real = {"image_path": m["portrait"], "wav_path": m["speech"]}
    cases = [Case("media", f"image: {n}", job(real | {"image_path": m[n]}), costly=True) for n in IMAGE_MEDIA]
    cases += [Case("media", f"wav: {n}", job(real | {"wav_path": m[n]}), costly=True) for n in AUDIO_MEDIA]
    v2v = {"input_type": "video", "video_path": m["video"], "wav_path": m["speech"], "width": 128, "height": 128,
           "steps": 1, "max_frame": 1}
    cases += [Case("media", f"video: {n}", job(v2v | {"video_path": m[n]}), costly=True)
              for n in VIDEO_MEDIA]
    multi = {**real, "image_path": m["two_people"], "person_count": "multi", "wav_path_2": m["speech_2"]}
    cases += [Case("media", f"wav_2: {n}", job(multi | {"wav_path_2": m[n]}), costly=True)
              for n in ("long_flac", "empty_wav", "png_as_wav")]
    for case in cases:
        case.job["input"].update(width=128, height=128, steps=1, max_frame=1)
        if "long_flac" in case.name:  # no frame cap: 4000 s is over the 3600 s limit and must be refused early
            del case.job["input"]["max_frame"]
            case.expect = ("too_long",)
    return cases


def engine_reaching(env: dict[str, Any], rng: random.Random) -> list[Case]:
    """Valid media with one hostile number the validator lets through: each may cost a real (tiny) job."""
    m = env["media"]
    multi = {"image_path": m["two_people"], "wav_path": m["speech"], "wav_path_2": m["speech_2"],
             "person_count": "multi", "width": 128, "height": 128, "steps": 1, "max_frame": 1, "seed": 1}
    single = {**multi, "image_path": m["portrait"], "person_count": "single", "wav_path_2": DROP}
    single = {k: v for k, v in single.items() if v is not DROP}
    variants = {
        "speaker_boxes NaN": (multi, {"speaker_boxes": [[float("nan")] * 4, [64, 0, 128, 128]]}),
        "speaker_boxes out of image": (multi, {"speaker_boxes": [[0, 0, 1e9, 1e9], [2e9, 2e9, 3e9, 3e9]]}),
        "max_duration below one frame": (single, {"max_duration": 0.001}),
        "max_duration 1e-300": (single, {"max_duration": 1e-300}),
    }
    return [Case("engine", name, job(base | extra), costly=True, expect=("invalid_request",))
            for name, (base, extra) in variants.items()]


HTTP_IMAGE = ["/gzip-bomb", "/gzip-bomb-plain", "/deflate-bomb", "/gzip-broken", "/br-garbage", "/zstd-garbage",
              "/stacked-encodings", "/unknown-encoding", "/transfer-gzip", "/truncated", "/length-huge",
              "/length-negative", "/length-garbage", "/length-overflow", "/html-200", "/png-as-html", "/png-as-wav",
              "/wav-as-png", "/notmedia", "/empty", "/type-garbage", "/no-content-type", "/status-500", "/status-502",
              "/status-503-retry-after", "/status-429", "/status-404", "/status-403", "/status-204", "/status-206",
              "/status-304", "/status-999", "/status-101", "/redirect-loop", "/redirect-pingpong-a",
              "/redirect-metadata", "/redirect-private", "/redirect-file", "/redirect-gopher", "/redirect-s3",
              "/redirect-refused", "/redirect-no-location", "/redirect-garbage", "/redirect-huge", "/redirect-ok",
              "/chain/0", "/close-now", "/reset", "/garbage-status", "/http09", "/bad-chunked", "/chunk-too-big",
              "/endless-chunked", "/endless-no-length", "/huge-header", "/many-headers", "/two-lengths",
              "/nul-header", "/missing-route"]
HTTP_SLOW = ["/slow-body", "/slow-chunked", "/slow-headers"]
HTTP_WAV = ["/gzip-bomb-wav", "/length-huge", "/endless-no-length", "/status-500", "/slow-body", "/png-as-wav"]


def http(env: dict[str, Any], rng: random.Random) -> list[Case]:
    """Loopback URLs: downloaded with private URLs allowed, refused (SSRF guard) without."""
    base, port = env["http"], env["http_port"]
    cases = [Case("http", p, _img(env, "image_url", base + p), PRIVATE) for p in HTTP_IMAGE]
    cases += [Case("http", f"slow {p}", _img(env, "image_url", base + p), PRIVATE, costly=True,
                   expect=("fetch_failed", "timeout")) for p in HTTP_SLOW]
    cases += [Case("http", f"wav {p}", _wav(env, "wav_url", base + p),
                   PRIVATE, costly=p.startswith("/slow")) for p in HTTP_WAV]
    tricks = [f"https://127.0.0.1:{port}/png", f"http://[::1]:{port}/png", f"http://localhost:{port}/png",
              f"http://127.1:{port}/png", f"http://0x7f000001:{port}/png", f"http://user:pass@127.0.0.1:{port}/png",
              f"http://127.0.0.1:{port}/png#frag", f"http://127.0.0.1:{port}/png?a=%00", f"http://127.0.0.1:{port}/%00",
              f"http://127.0.0.1:{port}/" + "a" * 100_000, f"http://127.0.0.1:{port}/png\x00", "http://127.0.0.1:0/x",
              "http://127.0.0.1:1/x"]
    cases += [Case("http", "url " + u[:40], _img(env, "image_url", u), PRIVATE) for u in tricks]
    refused = [*rng.sample(HTTP_IMAGE, 20), "/png"]
    cases += [Case("http_refused", p, _img(env, "image_url", base + p), DEFAULT, expect=("forbidden_source",))
              for p in refused]
    return cases


def s3(env: dict[str, Any], rng: random.Random) -> list[Case]:
    m = env["media"]
    real = {"wav_path": m["speech"]}
    image = {"s3://hostile/garbage.png": {}, "s3://hostile/trunc.png": {}, "s3://hostile/huge.bin": {},
             "s3://hostile/bomb.png": real, "s3://hostile/missing.png": {}, "s3://missing-bucket/x.png": {},
             "s3://hostile/dir/../dotdot.png": {}, "s3://hostile/": {}, "s3://Hostile/x.png": {},
             "s3://hostile/x\x00.png": {}, "s3://hostile/" + "k" * 2000: {}, "s3://a/b.png": {},
             "s3://hostile/portrait.png?versionId=zzz": {}, "s3://hostile/portrait.png#x": {},
             "s3://hostile/*.png": {}, "s3://hostile/[a-z]*": {}, "s3://hostile/portrait.png": {}}
    cases = [Case("s3", url[:48], _img(env, "image_url", url, **extra), costly=bool(extra))
             for url, extra in image.items()]
    cases += [Case("s3", f"wav {u}", _wav(env, "wav_url", u)) for u in ("s3://hostile/empty.wav",
                                                                         "s3://hostile/notmedia.wav")]
    down = ["s3://hostile/portrait.png", "s3://hostile/missing.png", "s3://other/x.wav"]
    cases += [Case("s3_down", u, _img(env, "image_url", u), S3_DOWN, costly=True, expect=("fetch_failed",))
              for u in down]
    cases.append(Case("s3_down", "wav from down endpoint", _wav(env, "wav_url", "s3://hostile/x.wav"), S3_DOWN,
                      costly=True, expect=("fetch_failed",)))
    return cases


FAMILIES = [paths, protocols, output_urls, base64s, media, engine_reaching, http, s3]
