"""Cheap facts about an input file (size, duration, streams) before any heavy decoding."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageOps

from talkgen.errors import MediaTooLarge, MediaUnreadable

# EXIF orientations that rotate by 90 or 270 degrees (width and height swap on display).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
# Packets read while looking for the first decodable frame of a stream.
_FIRST_FRAME_PACKETS = 512
_MOV_FORMATS = ("mov", "mp4", "m4a", "3gp")
_TAIL_CHECK_S = 0.5
# Container formats (FFmpeg names) whose headers state an audio stream's exact length.
_DECLARING_FORMATS = frozenset({"flac", "wav", "w64", "aiff", "mov", "mp4", "m4a", "3gp", "ogg", "matroska", "webm"})
_PCM_FORMATS = frozenset({"wav", "w64", "aiff"})


@dataclass(frozen=True)
class ImageInfo:
    """An image's displayed size (after EXIF orientation), Pillow format name and mode."""

    width: int
    height: int
    format: str
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class AVInfo:
    """What a container holds; video fields are 0/None without video, audio fields without audio."""

    duration: float
    has_audio: bool
    has_video: bool
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frames: int = 0
    sample_rate: int = 0
    channels: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    format: str = ""
    rotation: int = 0  # degrees counter-clockwise to turn decoded frames; width/height are after it


def media_label(path: Path, field: str | None) -> str:
    """How messages name a media file: the request field it came from, and the file."""
    return f"`{field}` ({path.name})" if field else path.name


def _too_large(path: Path, width: int, height: int, max_pixels: int, field: str | None,
               extra: str = "", what: str = "image") -> MediaTooLarge:
    per = " per frame" if what == "video" else ""
    return MediaTooLarge(
        f"The {what} {media_label(path, field)} is {width}x{height} = {width * height:,} pixels{per}, above the "
        f"cap of {max_pixels:,} pixels{extra}: send a smaller {what} (downscale it), or raise "
        "TALKGEN_MAX_IMAGE_PIXELS if you operate this service.",
        field=field,
        details={"width": width, "height": height, "max_pixels": max_pixels},
    )


def check_frame_pixels(path: Path, width: int, height: int, max_pixels: int | None, field: str | None) -> None:
    """Refuse video frames above the image pixel cap (``None``: no cap)."""
    if max_pixels is not None and width * height > max_pixels:
        raise _too_large(path, width, height, max_pixels, field, what="video")


def _open_image(path: Path, max_pixels: int, field: str | None) -> Image.Image:
    """Open lazily (header only) and refuse oversized images before any pixel data is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaTooLarge(
            f"The image {media_label(path, field)} is larger than the decoder's safety limit ({exc}); the cap is "
            f"{max_pixels:,} pixels: send a smaller image, or raise TALKGEN_MAX_IMAGE_PIXELS if you operate "
            "this service.",
            field=field,
            details={"max_pixels": max_pixels},
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaUnreadable(
            f"Could not read the image {media_label(path, field)}: {exc}. Send a valid PNG, JPEG or WebP file.",
            field=field,
        ) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise MediaUnreadable(
            f"The image {media_label(path, field)} has no pixels ({width}x{height}).", field=field
        )
    if width * height > max_pixels:
        img.close()
        raise _too_large(path, width, height, max_pixels, field)
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block does not make the picture unreadable
        return 1


def probe_image(path: Path, max_pixels: int, field: str | None = None) -> ImageInfo:
    """Size, format and mode of an image, read from its header only (no pixel decoding)."""
    img = _open_image(Path(path), max_pixels, field)
    with img:
        width, height = img.size
        if _orientation(img) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        return ImageInfo(width=width, height=height, format=img.format or "", mode=img.mode)


def load_image(path: Path, max_pixels: int, field: str | None = None) -> Image.Image:
    """The image as RGB, EXIF-oriented; transparency is flattened onto white."""
    path = Path(path)
    img = _open_image(path, max_pixels, field)
    try:
        with img, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            oriented = ImageOps.exif_transpose(img)
            alpha = oriented.mode in ("RGBA", "LA", "PA")
            if alpha or (oriented.mode == "P" and "transparency" in oriented.info):
                rgba = oriented.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, rgba).convert("RGB")
            return oriented.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(path, *img.size, max_pixels, field, extra=" (decoder safety limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaUnreadable(
            f"The image {media_label(path, field)} is corrupt or truncated ({exc}): send the complete file.",
            field=field,
        ) from None


def open_container(path: Path, field: str | None = None) -> av.container.InputContainer:
    """Open a media file for reading with PyAV; unreadable containers raise `MediaUnreadable`."""
    path = Path(path)
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaUnreadable(
            f"Could not read {media_label(path, field)} as audio or video ({exc}): send a complete, valid file "
            "(wav, mp3, m4a, flac, ogg, mp4, mov, mkv, webm).",
            field=field,
        ) from None


def stream_end_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Where a stream ends, when the container states it exactly (the mp4 family); None otherwise.

    MP4 records the true sample count, while AAC decoders emit whole 1024-sample frames: trimming the
    decoded tail to this end removes the encoder's padding.
    """
    if not any(name in container.format.name for name in _MOV_FORMATS):
        return None
    if stream.duration is None or stream.time_base is None:
        return None
    start = stream.start_time or 0
    return float((start + stream.duration) * stream.time_base)


def declared_audio_seconds(path: Path) -> float | None:
    """How long the first audio stream is, as the container's header states it; None when unknown.

    Only formats that store the length exactly count: flac (STREAMINFO total samples), wav/aiff (data
    size; a size beyond the file is not believed), the mp4 family (sample index), ogg (last granule),
    matroska/webm (segment duration). mp3 and other estimates from the bit rate are never used. Opens
    the header only: no audio is decoded.
    """
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return None
    with container:
        if not container.streams.audio:
            return None
        names = set(container.format.name.split(","))
        if not names & _DECLARING_FORMATS:
            return None
        stream = container.streams.audio[0]
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration and container.duration > 0:
            seconds = container.duration / av.time_base
        if seconds is None or seconds <= 0:
            return None
        if names & _PCM_FORMATS and not _fits_file(stream, seconds, Path(path)):
            return None
        return seconds


def _fits_file(stream: av.audio.stream.AudioStream, seconds: float, path: Path) -> bool:
    """PCM: the stated length must fit in the file's bytes (a streamed WAV may state 4 GB)."""
    ctx = stream.codec_context
    bits = ctx.format.bits if ctx.format is not None else 0
    per_second = stream.sample_rate * ctx.channels * bits / 8 if codec_is_pcm(ctx.name) else 0
    return not per_second or seconds * per_second <= path.stat().st_size * 1.01


def codec_is_pcm(name: str) -> bool:
    return name.startswith("pcm_")


def _duration(container: av.container.InputContainer) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = 0.0
    for stream in container.streams:
        if stream.duration and stream.time_base:
            best = max(best, float(stream.duration * stream.time_base))
    return best


def _rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and Fraction(rate) > 0:
            return float(rate)
    return 0.0


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream) -> av.frame.Frame | None:
    """Decode up to the stream's first non-empty frame (None when there is none), then rewind."""
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= _FIRST_FRAME_PACKETS:
                break
            for frame in packet.decode():
                if getattr(frame, "samples", 1) > 0:
                    return frame
        return None
    finally:
        container.seek(0)


def _unreadable(path: Path, field: str | None, what: str, exc: Exception) -> MediaUnreadable:
    return MediaUnreadable(
        f"The {what} in {media_label(path, field)} cannot be decoded ({exc}): send a complete, valid file.",
        field=field,
    )


def describe_container(container: av.container.InputContainer, path: Path, field: str | None = None,
                       check_audio: bool = True, max_pixels: int | None = None) -> AVInfo:
    """`AVInfo` for an opened container: stream headers, the first video frame (for its rotation),
    and the first audio frame when ``check_audio``.

    With ``max_pixels``, a video whose frames are larger is refused (`MediaTooLarge`) from the stream
    header, before any frame is decoded (and again from the first frame, for headers without a size).
    """
    path = Path(path)
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    duration = _duration(container)
    fps = 0.0
    width = height = frames = rotation = 0
    if video is not None:
        fps = _rate(video)
        width, height = video.codec_context.width, video.codec_context.height
        check_frame_pixels(path, width, height, max_pixels, field)
        frames = video.frames or (round(duration * fps) if fps else 0) or 1  # estimated when not stored
        try:
            first = _first_frame(container, video)
        except av.FFmpegError as exc:
            raise _unreadable(path, field, "video", exc) from None
        if first is None:
            raise MediaUnreadable(
                f"The video in {media_label(path, field)} has no decodable frames: send a complete, valid file.",
                field=field,
            )
        rotation = normalise_rotation(getattr(first, "rotation", 0) or 0)
        width, height = first.width, first.height
        check_frame_pixels(path, width, height, max_pixels, field)
        if rotation in (90, 270):
            width, height = height, width
    has_audio = audio is not None
    if audio is not None and check_audio:
        try:
            has_audio = _first_frame(container, audio) is not None
        except av.FFmpegError as exc:
            raise _unreadable(path, field, "audio", exc) from None
        if not has_audio and video is None:
            raise MediaUnreadable(
                f"{media_label(path, field)} has no audio samples: send a recording that contains speech.",
                field=field,
            )
    return AVInfo(
        duration=duration,
        has_audio=has_audio,
        has_video=video is not None,
        fps=fps,
        width=width,
        height=height,
        frames=int(frames),
        sample_rate=audio.sample_rate if has_audio and audio is not None else 0,
        channels=audio.channels if has_audio and audio is not None else 0,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if has_audio and audio is not None else None,
        format=container.format.name,
        rotation=rotation,
    )


def normalise_rotation(degrees: float) -> int:
    """A display rotation (counter-clockwise degrees, as PyAV reports it) as 0, 90, 180 or 270."""
    return round(degrees / 90.0) * 90 % 360


def _check_complete(container: av.container.InputContainer, path: Path, field: str | None) -> None:
    """MP4 family: the last packets the index promises must be in the file (catches cut downloads)."""
    stream = (container.streams.video or container.streams.audio)[0]
    end = stream_end_seconds(container, stream)
    if end is None or end <= 0:
        return
    tb = stream.time_base
    last_end = None
    try:
        target = max(stream.start_time or 0, int((end - _TAIL_CHECK_S) / tb))
        container.seek(target, stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            if packet.is_corrupt:
                last_end = None
                break
            packet_end = float((packet.pts + (packet.duration or 0)) * tb)
            last_end = packet_end if last_end is None else max(last_end, packet_end)
    except av.FFmpegError:
        last_end = None
    if last_end is None or last_end < end - _TAIL_CHECK_S:
        have = f"; data stops near {last_end:.1f} s" if last_end is not None else ""
        raise MediaUnreadable(
            f"{media_label(path, field)} is truncated: its index says {end:.1f} s{have}. Send the complete file "
            "(a download may have been cut short).",
            field=field,
        )


def probe_av(path: Path, field: str | None = None, *, max_pixels: int | None = None) -> AVInfo:
    """Streams, duration, fps and size of an audio or video file (headers, one audio frame, the tail).

    A video whose audio track is empty reports ``has_audio=False``; an audio-only file with no samples,
    or an mp4/mov whose data stops before its index says, raises `MediaUnreadable`. With ``max_pixels``
    (the service passes ``TALKGEN_MAX_IMAGE_PIXELS``), larger video frames raise `MediaTooLarge` before
    any frame is decoded.
    """
    path = Path(path)
    container = open_container(path, field)
    with container:
        if not container.streams.video and not container.streams.audio:
            raise MediaUnreadable(
                f"{media_label(path, field)} has neither audio nor video streams: send a speech recording or a "
                "video.",
                field=field,
            )
        info = describe_container(container, path, field, max_pixels=max_pixels)
        _check_complete(container, path, field)
        return info
