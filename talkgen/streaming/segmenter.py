"""Live HLS: one MPEG-TS segment (H.264 + AAC) per window, cut as soon as the window's frames are written.

The segments hold the very packets of the mp4: the writer encodes each window as its own GOP (an IDR frame
first) and hands the packets over at every cut (`VideoWriter.cut` → `Part`), with the soundtrack's AAC packets
that start before the window ends. The segmenter only muxes them, so the stream and the mp4 are the same
pictures and the same sound, and streaming costs a remux. Timestamps run on from segment to segment, offset by
`TS_OFFSET_S` so the AAC priming never goes negative.

Files, in ``<name>.hls/``: ``segment-NNNNN.ts``, ``stream.json`` (the segment list, for a resumed job),
``playlist.m3u8`` (an EVENT playlist, rewritten after each segment; ``#EXT-X-ENDLIST`` once the job is
done). Order per segment: the segment, then ``stream.json``, then the playlist.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av

from talkgen.errors import OutputFailed
from talkgen.streaming.store import Store

if TYPE_CHECKING:
    from talkgen.job import Job
    from talkgen.media.parts import Coded, Part
    from talkgen.progress import EventCallback

log = logging.getLogger(__name__)
PLAYLIST = "playlist.m3u8"
STATE = "stream.json"
TS_OFFSET_S = 1


def segment_name(index: int) -> str:
    return f"segment-{index:05d}.ts"


@dataclass
class Segment:
    index: int
    window: int
    name: str
    frames: int
    seconds: float
    start: float


class Segmenter:
    """Writes the writer's parts as HLS segments (`cut`, called through `Job.window_done`)."""

    def __init__(self, job: Job, store: Store, on_event: EventCallback | None = None) -> None:
        self.job_id = job.id
        self.store = store
        self.on_event = on_event
        self.fps = job.fps
        self.width, self.height = job.width, job.height
        self.total = job.frames
        longest = max((w.new_frames for w in job.windows), default=job.frames)
        self.target_duration = max(1, math.ceil(longest / job.fps))
        self.segments: list[Segment] = []
        self._adopted: dict[int, Segment] | None = None  # a previous run's segments, read on the first resumed cut
        self._started = False
        self.ended = False

    def cut(self, window: int, part: Part, *, resumed: bool = False) -> Segment | None:
        """Store ``part`` (window ``window``'s packets) as the next segment. A window replayed from a checkpoint
        whose segment a previous run already stored is not stored again."""
        if part.frames <= 0 or self.ended:
            return None
        if not self._started:
            self._started = True
            if resumed:
                self._adopted = self._previous_segments()
        index = len(self.segments)
        segment = Segment(index, window, segment_name(index), part.frames, part.frames / self.fps,
                          part.first_frame / self.fps)
        self.ended = part.final
        kept = (self._adopted or {}).get(index) if resumed else None
        if kept is not None and kept.window == window and kept.frames == part.frames:
            self.segments.append(kept)  # already stored by the run this one resumes
            return None
        self._adopted = None  # from here on, every segment is new
        self.store.put(segment.name, self._mux(part))
        self.segments.append(segment)
        self._save(ended=False)
        if self.on_event is not None:
            self.on_event({"event": "segment", "job_id": self.job_id, "window": window, "index": index,
                           "url": self.store.url(segment.name), "playlist": self.playlist_url,
                           "frames": part.frames, "seconds": round(segment.seconds, 3),
                           "start": round(segment.start, 3)})
        return segment

    def finish(self, tail: Part | None = None) -> None:
        """After the video is complete: store what the writer cut last (``tail``, if any), then end the
        playlist (``#EXT-X-ENDLIST``)."""
        if tail is not None and tail.frames:
            self.cut(self.segments[-1].window + 1 if self.segments else 0, tail)
        self._save(ended=True)

    @property
    def playlist_url(self) -> str:
        return self.store.url(PLAYLIST)

    @property
    def playlist_location(self) -> str:
        return self.store.location(PLAYLIST)

    # -- internals ---------------------------------------------------------------------------------------
    def _mux(self, part: Part) -> bytes:
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format="mpegts") as out:
                video = out.add_mux_stream("h264", rate=self.fps, width=self.width, height=self.height)
                audio = None
                if part.rate:  # every stream is added before the first packet (that writes the header)
                    audio = out.add_stream("aac", rate=part.rate, layout="mono")
                    audio.codec_context.extradata = part.audio_config
                _mux(out, video, part.video, self.fps)
                if audio is not None:
                    _mux(out, audio, part.audio, part.rate)
        except (av.FFmpegError, OSError) as exc:
            raise OutputFailed(f"Writing a stream segment failed: {exc}") from exc
        return buffer.getvalue()

    def _save(self, ended: bool) -> None:
        state = {"version": 1, "job_id": self.job_id, "fps": self.fps, "size": [self.width, self.height],
                 "frames": self.total, "ended": ended, "segments": [asdict(s) for s in self.segments]}
        self.store.put(STATE, json.dumps(state).encode())
        self.store.put(PLAYLIST, self._playlist(ended).encode())

    def _playlist(self, ended: bool) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.target_duration}",
                 "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-INDEPENDENT-SEGMENTS"]
        signed = self.store.signs
        for s in self.segments:
            lines += [f"#EXTINF:{s.seconds:.3f},", self.store.url(s.name) if signed else s.name]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _previous_segments(self) -> dict[int, Segment]:
        """The segments a previous run of this job stored (same job, size, rate and length), by index."""
        blob = self.store.get(STATE)
        try:
            state = json.loads(blob) if blob else None
            if not state or state.get("version") != 1 or state.get("job_id") != self.job_id or \
                    state.get("fps") != self.fps or state.get("frames") != self.total or \
                    state.get("size") != [self.width, self.height]:
                return {}
            return {s["index"]: Segment(**s) for s in state["segments"]}
        except (ValueError, TypeError, KeyError):
            log.warning("stream state in %s is unreadable; its segments are written again", self.store.folder)
            return {}


def _mux(out: av.container.OutputContainer, stream: av.stream.Stream, packets: list[Coded], units: int) -> None:
    """Mux copied packets (timestamps in ``1/units`` s) into ``stream``, shifted by `TS_OFFSET_S`."""
    offset = TS_OFFSET_S * units
    for coded in packets:
        packet = av.Packet(coded.data)
        packet.pts = None if coded.pts is None else coded.pts + offset
        packet.dts = None if coded.dts is None else coded.dts + offset
        packet.time_base = Fraction(1, units)
        packet.is_keyframe = coded.key
        packet.stream = stream
        out.mux(packet)
