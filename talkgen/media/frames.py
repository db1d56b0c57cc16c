"""Frames at the output size: fit (cover + centre-crop) and a streaming, seeking video frame reader."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from PIL import Image

from talkgen.errors import MediaUnreadable, UnsupportedMedia
from talkgen.media.probe import AVInfo, describe_container, media_label, normalise_rotation, open_container
from talkgen.plan import source_index_at

SEEK_AHEAD_FRAMES = 250
"""Decode forward up to this many frames; seek (to the previous keyframe) when the target is further."""
DEFAULT_SOURCE_FPS = 25.0
_TURN = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def fit_frame(image: Image.Image | np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale so ``width`` x ``height`` is covered, then centre-crop: an HxWx3 uint8 array (no padding)."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if img.mode != "RGB":
        img = img.convert("RGB")
    src_w, src_h = img.size
    if (src_w, src_h) != (width, height):
        scale = max(width / src_w, height / src_h)
        new_w = max(width, round(src_w * scale))
        new_h = max(height, round(src_h * scale))
        left = (new_w - width) // 2
        top = (new_h - height) // 2
        # Resample only the source region that survives the crop (same result, less work).
        box = (left / scale, top / scale, (left + width) / scale, (top + height) / scale)
        img = img.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return np.asarray(img, dtype=np.uint8)


class VideoFrameReader:
    """Random and sequential access to a video's frames, fitted to ``width`` x ``height``.

    Decodes forward from a cursor and seeks only backward or far ahead; never holds more than one
    decoded frame (plus one of look-ahead). With ``max_pixels`` (``TALKGEN_MAX_IMAGE_PIXELS``), a video
    with larger frames is refused (`MediaTooLarge`) from its header, before any frame is decoded.
    """

    def __init__(self, path: Path, width: int, height: int, field: str | None = None,
                 max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.width = width
        self.height = height
        self.field = field
        self._container = open_container(self.path, field)
        try:
            if not self._container.streams.video:
                raise UnsupportedMedia(
                    f"{self._label} has no video stream: send a video (mp4, mov, mkv, webm) or use an "
                    "image input.",
                    field=field,
                )
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"  # before the first decode opens the codec
            self.info: AVInfo = describe_container(self._container, self.path, field, check_audio=False,
                                                   max_pixels=max_pixels)
        except BaseException:
            self._container.close()
            raise
        self._fps = self.info.fps or DEFAULT_SOURCE_FPS
        self._time_base = self._stream.time_base
        self._start = self._stream.start_time or 0
        self._frames: Iterator[av.VideoFrame] | None = None
        self._current: tuple[int, av.VideoFrame] | None = None  # last frame with index <= target
        self._pending: tuple[int, av.VideoFrame] | None = None  # look-ahead frame past the target
        self._fitted: tuple[int, np.ndarray] | None = None
        self._decoded_count = 0
        self.frames_decoded = 0  # frames decoded so far, seeks included: a cost meter
        self._eof = False
        self._last_index: int | None = None  # known once the end was reached
        self._from_start = True

    @property
    def _label(self) -> str:
        return media_label(self.path, self.field)

    # --- context manager ---
    def __enter__(self) -> VideoFrameReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and decoder."""
        self._frames = None
        self._current = self._pending = None
        self._container.close()

    # --- decoding ---
    def _index(self, frame: av.VideoFrame) -> int:
        if frame.pts is None or self._time_base is None:
            return self._decoded_count
        return max(0, round(float((frame.pts - self._start) * self._time_base) * self._fps))

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.FFmpegError as exc:
            raise MediaUnreadable(
                f"The video {self._label} cannot be decoded ({exc}): send a complete, valid file.",
                field=self.field,
            ) from None

    def _next(self) -> tuple[int, av.VideoFrame] | None:
        if self._frames is None:
            self._frames = self._decode()
        frame = next(self._frames, None)
        if frame is None:
            self._eof = True
            if self._current is not None:
                self._last_index = self._current[0]
            return None
        self.frames_decoded += 1
        index = self._index(frame)
        self._decoded_count = index + 1
        return index, frame

    def _seek(self, index: int) -> None:
        target = self._start
        if index > 0 and self._time_base:
            target = self._start + math.floor(index / self._fps / self._time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:
            target = self._start
            self._container.seek(0)
        self._frames = None
        self._current = self._pending = None
        self._eof = False
        self._from_start = target == self._start

    def _advance(self, index: int) -> tuple[int, av.VideoFrame] | None:
        """Decode forward until the next frame is past ``index``; the latest frame at or before it."""
        while True:
            if self._pending is None:
                self._pending = None if self._eof else self._next()
                if self._pending is None:
                    return self._current
            if self._pending[0] > index:
                return self._current
            self._current, self._pending = self._pending, None

    def _locate(self, index: int) -> tuple[int, av.VideoFrame]:
        """The frame shown at source index ``index``: the latest frame whose index is <= it."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        if self._last_index is not None:
            index = min(index, self._last_index)
        cur = self._current
        if cur is not None and cur[0] == index:
            return cur
        if cur is None:
            far = self._frames is None and index > SEEK_AHEAD_FRAMES  # nothing decoded yet
        else:
            far = not cur[0] < index <= cur[0] + SEEK_AHEAD_FRAMES  # backward, or far ahead
        if far:
            self._seek(index)
        found = self._advance(index)
        if found is None and not self._from_start:
            self._seek(0)  # the seek landed past the target: decode from the start
            found = self._advance(index)
        if found is not None:
            return found
        if self._pending is not None:  # the stream's first frame comes after the target: show it
            self._current, self._pending = self._pending, None
            return self._current
        raise MediaUnreadable(f"The video {self._label} has no decodable frames.", field=self.field)

    def frame_at(self, src_index: int) -> np.ndarray:
        """Source frame ``src_index``, upright and fitted to the output size; past the end, the last frame."""
        index, frame = self._locate(src_index)
        if self._fitted is None or self._fitted[0] != index:
            image = frame.to_image()
            turn = normalise_rotation(getattr(frame, "rotation", 0) or 0)
            if turn:  # the container's display matrix (phone videos): show it upright
                image = image.transpose(_TURN[turn])
            self._fitted = (index, fit_frame(image, self.width, self.height))
        return self._fitted[1]

    def iter_resampled(self, fps: int = 25, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Output frames ``start``.. at ``fps``: frame t shows source frame floor(t * src_fps / fps).

        With ``count`` None it stops at the end of the source; otherwise the last frame repeats.
        """
        t = start
        while count is None or t < start + count:
            index = source_index_at(t, self._fps, fps)
            if count is None:
                self._locate(index)
                if self._last_index is not None and index > self._last_index:
                    return
            yield self.frame_at(index)
            t += 1
