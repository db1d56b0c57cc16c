"""Hostile requests about the request itself: job shapes, JSON text, fields, types, numbers, strings, modes.

Each family is a function ``(env, rng) -> list[Case]``. Requests start from `cheap`: valid fields with a
wav that is not audio, so a request the validator lets through still fails in milliseconds instead of
running the engine. Families that need real media live in hostile_sources.py.
"""

from __future__ import annotations

import json
import math
import random
import string
from dataclasses import dataclass, field
from typing import Any

DEFAULT, PRIVATE, S3_DOWN = "default", "private-urls", "s3-down"  # the service configurations (groups)
NAN, INF = math.nan, math.inf
STR_FIELDS = ["image_path", "image_url", "image_base64", "video_path", "video_url", "video_base64", "wav_path",
              "wav_url", "wav_base64", "wav_path_2", "wav_url_2", "wav_base64_2", "prompt", "negative_prompt",
              "output_url", "engine", "job_id"]
INT_FIELDS = ["width", "height", "max_frame", "seed", "steps"]
FLOAT_FIELDS = ["guidance_scale", "audio_guidance_scale", "shift", "max_duration"]
BOOL_FIELDS = ["force_offload", "network_volume"]
LITERAL_FIELDS = ["input_type", "person_count", "audio_type", "resolution"]
ALL_FIELDS = [*STR_FIELDS, *INT_FIELDS, *FLOAT_FIELDS, *BOOL_FIELDS, *LITERAL_FIELDS, "speaker_boxes"]
BIG = 3_000_000  # characters in a "huge" string
DROP: Any = object()  # a field value that removes the field from the cheap request


@dataclass
class Case:
    """One hostile job for the handler; ``job`` is passed as is (it need not be a dict)."""

    family: str
    name: str
    job: Any
    group: str = DEFAULT
    costly: bool = False  # may reach the engine or wait on a deadline: skipped by --quick
    expect: tuple[str, ...] = ()  # codes the issue asks for (informational)
    timeout_s: float = 0.0  # no answer after this long: hung (0: 180 s if costly, else 30 s)
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timeout_s = self.timeout_s or (180.0 if self.costly else 30.0)


def cheap(env: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A request that passes validation and fails fast on its wav; ``fields`` override (`DROP` removes)."""
    req = {"image_path": env["media"]["portrait"], "wav_path": env["media"]["notmedia_wav"], "width": 128,
           "height": 128, "steps": 1, "max_frame": 1, "seed": 1}
    req.update(fields)
    return {k: v for k, v in req.items() if v is not DROP}


def job(inp: Any, **top: Any) -> dict[str, Any]:
    return {"input": inp, **top}


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    """A list (or dict) nested ``depth`` deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def job_shape(env: dict[str, Any], rng: random.Random) -> list[Case]:
    c = cheap(env)
    shapes: dict[str, Any] = {
        "job None": None, "job list": [], "job str": "job", "job int": 42, "job empty": {}, "no input": {"id": "x"},
        "input None": job(None), "input list": job([]), "input [request]": job([c]), "input int": job(42),
        "input float": job(4.2), "input True": job(True), "input empty str": job(""), "input 'null'": job("null"),
        "input '[]'": job("[]"), "input '42'": job("42"), "input {}": job({}), "id None": job(c, id=None),
        "id NUL": job(c, id="\x00" * 10), "id 10k": job(c, id="a" * 10_000), "id list": job(c, id=["x"]),
        "id traversal": job(c, id="../../etc/passwd"), "id dict": job(c, id={"a": 1}), "id NaN": job(c, id=NAN),
        "extra top-level": job(c, webhook="http://127.0.0.1:1/", policy={"ttl": -1}),
    }
    return [Case("job_shape", name, j, expect=() if isinstance(j, dict) and isinstance(j.get("input"), dict)
                 else ("invalid_request",)) for name, j in shapes.items()]


def json_text(env: dict[str, Any], rng: random.Random) -> list[Case]:
    base = json.dumps(cheap(env))
    texts: dict[str, str] = {f"truncated at {n}": base[:n] for n in sorted(rng.sample(range(1, len(base)), 10))}
    for i in range(10):
        chars = list(base)
        for _ in range(3):
            chars[rng.randrange(len(chars))] = rng.choice('{}[]":,\\\x00 ')
        texts[f"mutated #{i}"] = "".join(chars)
    texts.update({
        "empty": "", "spaces": "   ", "open brace": "{", "single quotes": "{'a': 1}", "NaN": "NaN",
        "Infinity": "Infinity", "1e400": "1e400", "width 1e400": base[:-1] + ', "width": 1e400}',
        "max_frame 1e400": base.replace('"max_frame": 1', '"max_frame": 1e400'),
        "seed 40 digits": base.replace('"seed": 1', '"seed": ' + "9" * 40),
        "steps NaN": base.replace('"steps": 1', '"steps": NaN'),
        "max_frame -Infinity": base.replace('"max_frame": 1', '"max_frame": -Infinity'),
        "BOM": "\ufeff" + base, "trailing garbage": base + "garbage", "duplicate keys": base[:-1] + ', "seed": 2}',
        "lone surrogate": '{"prompt": "\\ud800"}', "raw surrogate": base[:-1] + ', "prompt": "\ud800"}',
        "NUL escape in path": base.replace(".png", ".png\\u0000.txt"), "NUL char": base + "\x00",
        "1 MB of spaces": " " * 1_000_000 + base, "true": "true", "null": "null", "list": "[" + base + "]",
        "wrapped input": '{"input": ' + base + "}", "brackets 100k": "[" * 100_000, "objects 50k": '{"a":' * 50_000,
        "balanced 5k": "[" * 5_000 + "]" * 5_000, "deep in field": base[:-1] + ', "prompt": ' + "[" * 20_000 + "]"
        * 20_000 + "}", "huge number": base[:-1] + ', "seed": ' + "1" * 5000 + "}",
    })
    return [Case("json_text", name, job(text)) for name, text in texts.items()]


def unknown_fields(env: dict[str, Any], rng: random.Random) -> list[Case]:
    keys: list[Any] = ["".join(rng.choices(string.ascii_letters + "_", k=rng.randint(1, 20))) for _ in range(8)]
    keys += ["imagepath", "wav_url2", "Image_Path", "IMAGE_PATH", "width ", "steps\x00", "", "\x00", "a" * 100_000,
             "__class__", "model_config", "__proto__", "constructor", "😀", "\ud800", "input", "id", "webhook",
             "image_path.value", "speaker_boxes[0]", 1, None]
    cases = [Case("unknown_field", f"key {str(k)[:24]!r}", job(cheap(env, **{}) | {k: "x"}),
                  expect=("invalid_request",)) for k in keys]
    cases.append(Case("unknown_field", "500 unknown keys", job(cheap(env) | {f"k{i}": i for i in range(500)})))
    cases.append(Case("unknown_field", "deep value", job(cheap(env) | {"extra": nested(50_000)})))
    return cases


WRONG: dict[str, list[Any]] = {
    "str": [123, 1.5, True, [], {}, ["a"], {"a": 1}, [None]],
    "int": ["abc", "12px", 12.5, [], {}, "", [1], "0x10", "1_000"],
    "float": ["abc", [], {}, "1,5", "", [1.0], "fast"],
    "bool": ["maybe", 2, [], {}, "", 0.5, "yess"],
    "literal": ["IMAGE", "", 1, [], {}, None, "image ", "vide\x00o"],
    "list": ["0,0,1,1", 5, {}, [1, 2, 3, 4], [[0, 0, 1, 1]], [["a", "b", "c", "d"]] * 2, [[]] * 2, [None, None]],
}


def wrong_types(env: dict[str, Any], rng: random.Random) -> list[Case]:
    kinds = {**dict.fromkeys(STR_FIELDS, "str"), **dict.fromkeys(INT_FIELDS, "int"),
             **dict.fromkeys(FLOAT_FIELDS, "float"), **dict.fromkeys(BOOL_FIELDS, "bool"),
             **dict.fromkeys(LITERAL_FIELDS, "literal"), "speaker_boxes": "list"}
    cases = []
    for name, kind in kinds.items():
        for value in rng.sample(WRONG[kind], 3):
            cases.append(Case("wrong_type", f"{name}={_short(value)}"[:60], job(cheap(env) | {name: value})))
    return cases


NUMBERS: list[Any] = [NAN, INF, -INF, float("1e400"), 10**100, -(10**100), 2**63, 2**64 + 1, -1, 0, 1e-320,
                      "NaN", "1e400", "-inf", 1e308, -0.0, "9" * 5000]
HUGE_INT = 10**5000  # past Python's 4300-digit int/str conversion limit


def numbers(env: dict[str, Any], rng: random.Random) -> list[Case]:
    cases = []
    for name in INT_FIELDS + FLOAT_FIELDS:
        for value in [HUGE_INT, *rng.sample(NUMBERS, 6)]:
            cases.append(Case("number", f"{name}={_short(value)}", job(cheap(env) | {name: value})))
    return cases


def _short(value: Any) -> str:
    """repr, bounded (and safe for ints past Python's 4300-digit str limit)."""
    if isinstance(value, int) and value.bit_length() > 400:
        return f"<{value.bit_length()}-bit int>"
    return repr(value)[:50]


def strings(env: dict[str, Any], rng: random.Random) -> list[Case]:
    m, big = env["media"], "a" * BIG
    values: dict[str, dict[str, Any]] = {}
    for name in ("image_path", "wav_path", "output_url", "prompt", "negative_prompt", "engine", "job_id"):
        values[f"NUL in {name}"] = {name: (m["portrait"] if name == "image_path" else "x") + "\x00.txt"}
        values[f"surrogate in {name}"] = {name: "x\ud800y"}
    values.update({
        "3 MB image_path": {"image_path": "/" + big}, "3 MB wav_path": {"wav_path": m["portrait"] + big},
        "3 MB output_url": {"output_url": "s3://hostile/" + big}, "3 MB prompt": {"prompt": big},
        "3 MB engine": {"engine": big}, "3 MB image_url": {"image_path": DROP, "image_url": "http://x/" + big},
        "3 MB job_id": {"job_id": big}, "3 MB base64": {"image_path": DROP, "image_base64": "@" * BIG},
        "newline path": {"image_path": m["portrait"] + "\n/etc/passwd"}, "RTL override": {"image_path": "\u202egnp.x"},
        "tilde": {"image_path": "~/portrait.png"}, "env var": {"image_path": "$HOME/portrait.png"},
        "relative": {"image_path": "portrait.png"}, "dot": {"image_path": "."}, "blank": {"image_path": "   "},
        "UNC": {"image_path": "\\\\server\\share\\x.png"}, "windows": {"image_path": "C:\\x.png"},
        "file URL as path": {"image_path": "file:///etc/passwd"}, "/dev/zero": {"wav_path": "/dev/zero"},
        "/dev/stdin": {"wav_path": "/dev/stdin"}, "/proc/self/environ": {"image_path": "/proc/self/environ"},
        "/etc/shadow": {"image_path": "/etc/shadow"}, "URL in path field": {"image_path": "http://127.0.0.1:1/x"},
        "emoji prompt 1M": {"prompt": "😀" * 1_000_000}, "control chars": {"prompt": "".join(map(chr, range(32)))},
    })
    return [Case("string", name, job(cheap(env, **fields))) for name, fields in values.items()]


def modes(env: dict[str, Any], rng: random.Random) -> list[Case]:
    m = env["media"]
    box = [[0, 0, 64, 128], [64, 0, 128, 128]]
    multi = {"person_count": "multi", "wav_path_2": m["speech_2"]}
    variants: dict[str, dict[str, Any]] = {
        "video_url with image mode": {"video_url": "http://127.0.0.1:1/v.mp4"},
        "image with video mode": {"input_type": "video"}, "wav_path_2 single": {"wav_path_2": m["speech_2"]},
        "multi without wav_2": {"person_count": "multi"}, "image path+url": {"image_url": "http://127.0.0.1:1/a"},
        "image path+base64": {"image_base64": "AAAA"}, "wav all three": {"wav_url": "s3://x/y", "wav_base64": "AA"},
        "input_type IMAGE": {"input_type": "IMAGE"}, "input_type both": {"input_type": "both"},
        "input_type None": {"input_type": None}, "person_count two": {"person_count": "two"},
        "person_count 2": {"person_count": 2}, "audio_type single": {"audio_type": "para"},
        "audio_type both": {**multi, "audio_type": "both"}, "boxes single": {"speaker_boxes": box},
        "boxes empty": {**multi, "speaker_boxes": []}, "boxes [[]]": {**multi, "speaker_boxes": [[]]},
        "one box": {**multi, "speaker_boxes": box[:1]}, "three boxes": {**multi, "speaker_boxes": box * 2},
        "inverted box": {**multi, "speaker_boxes": [[10, 10, 0, 0], box[1]]},
        "negative box": {**multi, "speaker_boxes": [[-5, 0, 10, 10], box[1]]},
        "boxes 1e400": {**multi, "speaker_boxes": [[0, 0, INF, INF], box[1]]},
        "box strings": {**multi, "speaker_boxes": [["0", "0", "1", "1"], box[1]]},
        "resolution+width": {"resolution": "480p", "width": 256}, "resolution 1080p": {"resolution": "1080p"},
        "width 127": {"width": 127}, "width 1921": {"width": 1921}, "height -16": {"height": -16},
        "max_duration 0": {"max_duration": 0}, "max_duration -1": {"max_duration": -1}, "max_frame 0": {"max_frame": 0},
        "job_id traversal": {"job_id": "../x"}, "job_id 200": {"job_id": "a" * 200}, "job_id empty": {"job_id": ""},
        "engine comfyui": {"engine": "comfyui"}, "engine unknown": {"engine": "nonexistent"},
        "engine traversal": {"engine": "../../x"}, "engine empty": {"engine": ""},
        "network_volume+output_url": {"network_volume": True, "output_url": "s3://hostile/x.mp4"},
        "network_volume (no volume)": {"network_volume": True},
    }
    return [Case("mode", name, job(cheap(env, **fields))) for name, fields in variants.items()]


def nesting(env: dict[str, Any], rng: random.Random) -> list[Case]:
    cases = [Case("nesting", f"prompt list depth {d}", job(cheap(env, prompt=nested(d)))) for d in (100, 900, 5000)]
    cases += [
        Case("nesting", "prompt dict depth 50000", job(cheap(env, prompt=nested(50_000, kind="dict")))),
        Case("nesting", "speaker_boxes depth 5000", job(cheap(env, person_count="multi", speaker_boxes=nested(5000)))),
        Case("nesting", "input depth 20000", job(nested(20_000, cheap(env), kind="dict"))),
        Case("nesting", "wide list 1M", job(cheap(env, prompt=[0] * 1_000_000))),
        Case("nesting", "self-reference", job(_self_referencing(cheap(env)))),
    ]
    return cases


def _self_referencing(req: dict[str, Any]) -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return req | {"prompt": loop}


POOL: list[Any] = [None, "", " ", "\x00", "a" * 5000, "../../../../etc/passwd", "MEMORY://x", "S3://x/y",
                   "file::memory://x", "data:;base64,AAAA", "http://169.254.169.254/", NAN, INF, -INF, 10**30, -1, 0,
                   0.5, True, False, [], {}, [[NAN] * 4] * 2, [[1e308] * 4] * 2, {"$ref": "#"}, "\ud800", "😀" * 1000,
                   2**64, "1e400", HUGE_INT, [None], nested(5), "multi", "video", "add", "720p", "s3://hostile/../x"]


def fuzz(env: dict[str, Any], rng: random.Random, count: int) -> list[Case]:
    """``count`` random mutations (1-3 fields, values from `POOL`) of the cheap request."""
    cases = []
    for i in range(count):
        fields = rng.sample([*ALL_FIELDS, "unknown_" + str(i)], rng.randint(1, 3))
        changes = {f: rng.choice(POOL) for f in fields}
        name = ", ".join(f"{k}={_short(v)}"[:30] for k, v in changes.items())
        cases.append(Case("fuzz", name, job(cheap(env) | changes)))
    return cases


FAMILIES = [job_shape, json_text, unknown_fields, wrong_types, numbers, strings, modes, nesting]
