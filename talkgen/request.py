"""The request contract: the seed template's fields unchanged, plus what InfiniteTalk users ask for."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from talkgen.errors import ConflictingMedia, InvalidRequest, MissingMedia, shown
from talkgen.mode import ALL_ROLES, MediaRole, Mode

MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = 128, 1920, 16
RESOLUTION_AREAS = {"480p": 832 * 480, "720p": 1280 * 720}
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FPS = 25
"""InfiniteTalk's frame rate: what `max_duration` is checked against before the server's settings are known."""
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer path cannot be opened
MAX_URL_CHARS = 16_384  # signed storage URLs are a few KB
MAX_PROMPT_CHARS = 20_000  # the text encoder reads 512 tokens
MAX_FRAMES = 10**9  # any larger number of frames is no cap at all (and would overflow a float)
# Fields that name files or storage: no NUL (the OS cannot take one), no lone UTF-16 surrogates.
LOCATION_FIELDS = frozenset({
    *(role.path_field for role in ALL_ROLES), *(role.url_field for role in ALL_ROLES), "output_url",
})

Box = tuple[float, float, float, float]


class MediaRef(BaseModel):
    """One media input as the request gave it: which field, and its value."""

    model_config = ConfigDict(frozen=True)

    role: str
    field: str
    via: Literal["path", "url", "base64"]
    value: str


class TalkRequest(BaseModel):
    """A talking-video job. Accepts every request of the seed template unchanged."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # --- the seed template's fields, same names, same defaults ---
    input_type: Literal["image", "video"] = "image"
    person_count: Literal["single", "multi"] = "single"
    image_path: str | None = Field(None, max_length=MAX_PATH_CHARS)
    image_url: str | None = Field(None, max_length=MAX_URL_CHARS)
    image_base64: str | None = None
    video_path: str | None = Field(None, max_length=MAX_PATH_CHARS)
    video_url: str | None = Field(None, max_length=MAX_URL_CHARS)
    video_base64: str | None = None
    wav_path: str | None = Field(None, max_length=MAX_PATH_CHARS)
    wav_url: str | None = Field(None, max_length=MAX_URL_CHARS)
    wav_base64: str | None = None
    wav_path_2: str | None = Field(None, max_length=MAX_PATH_CHARS)
    wav_url_2: str | None = Field(None, max_length=MAX_URL_CHARS)
    wav_base64_2: str | None = None
    prompt: str = Field("A person talking naturally", max_length=MAX_PROMPT_CHARS)
    width: int | None = Field(None, description="Output width in pixels (128-1920, rounded to 16). Default 512.")
    height: int | None = Field(None, description="Output height in pixels (128-1920, rounded to 16). Default 512.")
    max_frame: int | None = Field(None, ge=1, le=MAX_FRAMES, description="Cap on the number of output frames (25 fps).")
    force_offload: bool = Field(True, description="Offload model parts to CPU between uses (less VRAM).")
    network_volume: bool = Field(False, description="Write the video to the network volume; return its path.")

    # --- talkgen additions ---
    seed: int | None = Field(None, ge=0, lt=2**32, description="Random seed; random when omitted.")
    preset: Literal["fast", "quality"] | None = Field(
        None, description="Sampling preset: fast (distill LoRA, few steps) or quality (40 steps); default from "
        "the server (TALKGEN_NATIVE_PRESET). steps/guidance fields override its values."
    )
    steps: int | None = Field(None, ge=1, le=100, description="Sampling steps (the preset's when omitted).")
    guidance_scale: float | None = Field(None, ge=0, le=20, description="Text classifier-free guidance.")
    audio_guidance_scale: float | None = Field(None, ge=0, le=20, description="Audio guidance.")
    shift: float | None = Field(None, gt=0, le=50, description="Flow-matching timestep shift.")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    audio_type: Literal["para", "add"] | None = Field(
        None, description="Two speakers: 'para' talk simultaneously, 'add' take turns (speaker 1 first)."
    )
    speaker_boxes: list[list[float]] | None = Field(
        None, description="Two [x0, y0, x1, y1] pixel boxes in the input; default left and right halves."
    )
    max_duration: float | None = Field(None, gt=0, description="Cap on the video length in seconds.")
    separate_vocals: bool = Field(
        True, description="Separate the speech from music and noise before lip-sync (as the seed does); the "
        "video's soundtrack stays the original audio. false skips it."
    )
    resolution: Literal["480p", "720p"] | None = Field(
        None, description="Size preset instead of width/height; aspect ratio taken from the input."
    )
    output_url: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="fsspec URL or prefix (ending in /) to write the mp4 to."
    )
    stream: bool | None = Field(
        None, description="Also write the video as a live HLS stream (a playlist and one MPEG-TS segment per "
        "window) next to the mp4, playable while the job runs; default from the server (TALKGEN_STREAM, off). "
        "Needs a destination: output_url or network_volume."
    )
    engine: str | None = Field(None, max_length=100, description="Engine to run (default from TALKGEN_ENGINE).")
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN, description="Your id for the job (resume, names).")

    @model_validator(mode="after")
    def _check_rules(self) -> TalkRequest:
        _check_text(self)
        mode = self.mode
        used = set(mode.roles)
        for role in ALL_ROLES:
            given = [f for f in role.fields if getattr(self, f) not in (None, "")]
            if role not in used:
                if given:
                    raise InvalidRequest(
                        f"{_list(given)} given, but mode {mode.value} (input_type={self.input_type!r}, "
                        f"person_count={self.person_count!r}) does not use {role.label}: remove it or change "
                        "input_type/person_count.",
                        field=given[0],
                    )
                continue
            if len(given) > 1:
                raise ConflictingMedia(
                    f"{_list(given)} are both given for {role.label}: send exactly one.",
                    field=given[0],
                )
            if not given:
                raise MissingMedia(
                    f"Mode {mode.value} needs {role.label}: set {role.describe_fields()}. (talkgen never "
                    "substitutes demo media.)",
                    field=role.url_field,
                )
        if mode.speakers == 1:
            for name in ("audio_type", "speaker_boxes"):
                if getattr(self, name) is not None:
                    raise InvalidRequest(
                        f"`{name}` applies to two speakers only: remove it or set person_count to 'multi'.",
                        field=name,
                    )
        if self.speaker_boxes is not None:
            _check_boxes(self.speaker_boxes)
        if self.max_duration is not None:
            _check_duration(self.max_duration, FPS)
        if self.resolution is not None and (self.width is not None or self.height is not None):
            raise InvalidRequest(
                "`resolution` and `width`/`height` both given: use one way to set the size.", field="resolution"
            )
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and not MIN_SIDE <= value <= MAX_SIDE:
                raise InvalidRequest(
                    f"`{name}` is {shown(value)}: use a value from {MIN_SIDE} to {MAX_SIDE} pixels.", field=name
                )
        return self

    # --- derived values ---
    @property
    def mode(self) -> Mode:
        return Mode.resolve(self.input_type, self.person_count)

    @property
    def resolved_audio_type(self) -> str | None:
        """'para' or 'add' for two speakers (the seed's graphs ran 'para'); None for one."""
        return (self.audio_type or "para") if self.mode.speakers == 2 else None

    def media_refs(self) -> dict[str, MediaRef]:
        """The one source given for each role the mode needs, keyed by role name."""
        refs: dict[str, MediaRef] = {}
        for role in self.mode.roles:
            refs[role.name] = _ref_for(self, role)
        return refs

    def output_size(self, source_width: int | None = None, source_height: int | None = None) -> tuple[int, int]:
        """The (width, height) that will be produced: multiples of 16 within 128-1920."""
        if self.resolution is not None:
            if not source_width or not source_height:
                raise InvalidRequest("`resolution` needs the input's size to pick the aspect ratio.")
            area = RESOLUTION_AREAS[self.resolution]
            aspect = source_width / source_height
            return _round_side(math.sqrt(area * aspect)), _round_side(math.sqrt(area / aspect))
        return _round_side(self.width or 512), _round_side(self.height or 512)

    def max_seconds(self, fps: int) -> float | None:
        """The tighter of `max_duration` and `max_frame`, in seconds (None when neither is set)."""
        if self.max_duration is not None:
            _check_duration(self.max_duration, fps)
        caps = [c for c in (self.max_duration, self.max_frame / fps if self.max_frame else None) if c]
        return min(caps) if caps else None

    @classmethod
    def parse(cls, data: Any) -> TalkRequest:
        """Validate a request dict (or JSON-able mapping), raising `TalkgenError` on any problem."""
        if isinstance(data, TalkRequest):
            return data
        if not isinstance(data, dict):
            raise InvalidRequest(f"The request must be a JSON object, got {type(data).__name__}.", field="input")
        unknown = [k for k in data if k not in cls.model_fields]
        if unknown:
            hints = []
            for key in unknown[:10]:
                name = _field_name(key)
                close = difflib.get_close_matches(name, list(cls.model_fields), n=1, cutoff=0.6)
                hints.append(f"`{name}` (did you mean `{close[0]}`?)" if close else f"`{name}`")
            if len(unknown) > 10:
                hints.append(f"and {len(unknown) - 10} more")
            raise InvalidRequest(
                f"Unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: fix or remove "
                f"{'them' if len(unknown) > 1 else 'it'}. Valid fields are listed in the README.",
                field=_field_name(unknown[0]),
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _from_validation_error(exc) from None


def _ref_for(request: TalkRequest, role: MediaRole) -> MediaRef:
    for field, via in zip(role.fields, ("path", "url", "base64"), strict=True):
        value = getattr(request, field)
        if value not in (None, ""):
            return MediaRef(role=role.name, field=field, via=via, value=value)
    raise MissingMedia(f"Set {role.describe_fields()}.", field=role.url_field)  # unreachable after validation


def _round_side(value: float) -> int:
    side = int(value / SIDE_MULTIPLE + 0.5) * SIDE_MULTIPLE  # half up, not banker's rounding
    return max(MIN_SIDE, min(MAX_SIDE, side))


def _field_name(key: object) -> str:
    """An unknown key as a message shows it: a string, cut short."""
    name = key.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(key, str) else shown(key)
    return name if len(name) <= 60 else name[:57] + "..."


def _check_text(request: TalkRequest) -> None:
    """Strings a file system, a URL parser or a terminal cannot take are the caller's mistake, said so."""
    for name in type(request).model_fields:
        value = getattr(request, name)
        if not isinstance(value, str):
            continue
        if "\x00" in value and name in LOCATION_FIELDS:
            raise InvalidRequest(
                f"`{name}` contains a NUL character (\\x00), which no path or URL may hold: remove it.", field=name
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(
                f"`{name}` contains an unpaired UTF-16 surrogate at character {exc.start}, which is not text: "
                "send valid Unicode.",
                field=name,
            ) from None


def _check_duration(seconds: float, fps: int) -> None:
    if seconds < 1 / fps:
        raise InvalidRequest(
            f"`max_duration` is {shown(seconds)} s, shorter than one video frame ({1 / fps:g} s at {fps} fps): "
            f"use at least {1 / fps:g}, or leave it out to use the whole audio.",
            field="max_duration",
        )


def _check_boxes(boxes: list[list[float]]) -> None:
    if len(boxes) != 2 or any(len(b) != 4 for b in boxes):
        raise InvalidRequest(
            "`speaker_boxes` must be two boxes [[x0, y0, x1, y1], [x0, y0, x1, y1]] in input pixels.",
            field="speaker_boxes",
        )
    for i, box in enumerate(boxes, start=1):
        if not all(math.isfinite(v) for v in box):
            raise InvalidRequest(
                f"`speaker_boxes` box {i} holds {', '.join(shown(v) for v in box if not math.isfinite(v))}: "
                "give finite pixel coordinates.",
                field="speaker_boxes",
            )
    for i, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        if min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
            raise InvalidRequest(
                f"`speaker_boxes` box {i} is {[x0, y0, x1, y1]}: need 0 <= x0 < x1 and 0 <= y0 < y1.",
                field="speaker_boxes",
            )


def _list(fields: list[str]) -> str:
    return " and ".join(f"`{f}`" for f in fields)


def _from_validation_error(exc: ValidationError) -> InvalidRequest:
    problems = []
    first_field = None
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        first_field = first_field or loc
        problems.append(f"`{loc}`: {err['msg']} (got {shown(err.get('input'), limit=60)})")
        if len(problems) == 5:
            break
    return InvalidRequest("Invalid request: " + "; ".join(problems) + ".", field=first_field)


def is_job_id(value: str) -> bool:
    return re.match(JOB_ID_PATTERN, value) is not None
