"""Live HLS: one MPEG-TS segment (H.264 + AAC) per window, cut as soon as the window's frames are written.

The segmenter sees the frames the mp4 writer gets and encodes them with its own continuous H.264 encoder
(low-latency: every frame's packet comes out at once, so a window is complete the moment it is written;
an IDR frame opens every segment). One continuous AAC encoder runs over the soundtrack, ahead of the video
by two AAC frames (the soundtrack is known in advance), so each segment carries the audio up to its last
frame and the stream has no priming gaps between segments. Timestamps run on from segment to segment,
offset by `TS_OFFSET_S` so the AAC priming never goes negative.

Files, in ``<name>.hls/``: ``segment-NNNNN.ts``, ``stream.json`` (the segment list, for a resumed job),
``playlist.m3u8`` (an EVENT playlist, rewritten after each segment; ``#EXT-X-ENDLIST`` once the job is
done). Order per segment: the segment, then ``stream.json``, then the playlist.
"""

from __future__ import annotations

import io
import json
import logging
import math
import wave
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from talkgen.errors import OutputFailed
from talkgen.streaming.store import Store

if TYPE_CHECKING:
    from talkgen.job import Job
    from talkgen.progress import EventCallback

log = logging.getLogger(__name__)
PLAYLIST = "playlist.m3u8"
STATE = "stream.json"
TS_OFFSET_S = 1
AUDIO_AHEAD_FRAMES = 2
CRF, PRESET = 19, "veryfast"  # as the mp4 writer


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
    """Cuts the job's frames into HLS segments at `cut` (called through `Job.window_done`)."""

    def __init__(self, job: Job, store: Store, on_event: EventCallback | None = None) -> None:
        from talkgen.media.writer import _MATRIX_SMPTE170M, _PRIMARIES_BT709, _RANGE_TV, _TRC_BT709

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
        self.seen = 0  # frames encoded
        self.cut_at = 0  # frames in segments so far
        self._video_packets: list[av.Packet] = []
        v = av.CodecContext.create("libx264", "w")
        v.width, v.height, v.pix_fmt = job.width, job.height, "yuv420p"
        v.time_base, v.framerate = Fraction(1, job.fps), Fraction(job.fps, 1)
        v.color_primaries, v.color_trc, v.colorspace, v.color_range = (_PRIMARIES_BT709, _TRC_BT709,
                                                                       _MATRIX_SMPTE170M, _RANGE_TV)
        # One encoding thread up to 480p (faster than slices there, and off the model's cores), two above.
        threads = "1" if job.width * job.height <= 832 * 480 else "2"
        v.options = {"crf": str(CRF), "preset": PRESET, "tune": "zerolatency", "forced-idr": "1", "threads": threads}
        v.open()
        self._video = v
        self._audio: Any = None
        self._wav: wave.Wave_read | None = None
        self._audio_sent = 0
        self._audio_packets: list[av.Packet] = []
        soundtrack = job.audio.soundtrack
        if soundtrack is not None:
            self._wav = wave.open(str(soundtrack), "rb")  # noqa: SIM115 - read as the job goes
            self.rate = self._wav.getframerate()
            a = av.CodecContext.create("aac", "w")
            a.sample_rate, a.layout, a.format = self.rate, "mono", "fltp"
            a.bit_rate, a.time_base = 128_000, Fraction(1, self.rate)
            a.open()
            self._audio = a
            self._audio_total = self.total * self.rate // self.fps

    # -- frames ------------------------------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> None:
        """Encode frames (uint8 RGB ``[T, H, W, 3]`` or ``[H, W, 3]``); the first after a cut is an IDR frame."""
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        for rgb in arr:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = self.seen, Fraction(1, self.fps)
            if self.seen == self.cut_at:
                frame.pict_type = av.video.frame.PictureType.I
            self._video_packets.extend(self._video.encode(frame))
            self.seen += 1

    # -- cutting -----------------------------------------------------------------------------------------
    def cut(self, window: int, *, resumed: bool = False) -> Segment | None:
        """Close a segment of the frames since the last cut. A window replayed from a checkpoint whose segment a
        previous run already wrote is encoded (the encoders run on) but not written again."""
        frames = self.seen - self.cut_at
        if frames <= 0 or self.ended:
            return None
        if not self._started:
            self._started = True
            if resumed:
                self._adopted = self._previous_segments()
        final = self.seen >= self.total
        if final:
            self._video_packets.extend(self._video.encode(None))
        video, self._video_packets = self._video_packets, []
        audio = self._audio_until(self.seen, final)
        index = len(self.segments)
        segment = Segment(index, window, segment_name(index), frames, frames / self.fps, self.cut_at / self.fps)
        self.cut_at = self.seen
        self.ended = final
        kept = (self._adopted or {}).get(index) if resumed else None
        if kept is not None and kept.window == window and kept.frames == frames:
            self.segments.append(kept)  # already stored by the run this one resumes
            return None
        self._adopted = None  # from here on, every segment is new
        self.store.put(segment.name, self._mux(video, audio))
        self.segments.append(segment)
        self._save(ended=False)
        if self.on_event is not None:
            self.on_event({"event": "segment", "job_id": self.job_id, "window": window, "index": index,
                           "url": self.store.url(segment.name), "playlist": self.playlist_url,
                           "frames": frames, "seconds": round(segment.seconds, 3), "start": round(segment.start, 3)})
        return segment

    def finish(self) -> None:
        """After the video is complete: cut what is left, then end the playlist (``#EXT-X-ENDLIST``)."""
        if not self.ended and self.seen > self.cut_at:
            self.cut(len(self.segments))
        self._close()
        self._save(ended=True)

    def abort(self) -> None:
        """The job failed: the files stay as they are (a retry resumes the playlist); encoders are released."""
        self._close()

    @property
    def playlist_url(self) -> str:
        return self.store.url(PLAYLIST)

    @property
    def playlist_location(self) -> str:
        return self.store.location(PLAYLIST)

    # -- internals ---------------------------------------------------------------------------------------
    def _audio_until(self, video_frames: int, final: bool) -> list[av.Packet]:
        """AAC packets that start before ``video_frames``' time (all of them at the end)."""
        if self._audio is None or self._wav is None:
            return []
        end = video_frames * self.rate // self.fps
        ahead = self._audio_total if final else min(end + AUDIO_AHEAD_FRAMES * self._audio.frame_size,
                                                     self._audio_total)
        size = self._audio.frame_size
        while self._audio_sent < ahead:
            want = min(size, self._audio_total - self._audio_sent)
            pcm = np.frombuffer(self._wav.readframes(want), dtype="<i2").astype(np.float32) / 32768.0
            if len(pcm) < want:  # the soundtrack is shorter than the video: silence, as in the mp4
                pcm = np.concatenate([pcm, np.zeros(want - len(pcm), np.float32)])
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = self.rate, self._audio_sent, Fraction(1, self.rate)
            self._audio_packets.extend(self._audio.encode(frame))
            self._audio_sent += want
        if final:
            self._audio_packets.extend(self._audio.encode(None))
            taken, self._audio_packets = self._audio_packets, []
            return taken
        taken = [p for p in self._audio_packets if p.pts is not None and p.pts < end]
        self._audio_packets = self._audio_packets[len(taken):]
        return taken

    def _mux(self, video: list[av.Packet], audio: list[av.Packet]) -> bytes:
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format="mpegts") as out:
                vs = out.add_stream("h264", rate=self.fps)
                vs.width, vs.height, vs.pix_fmt = self.width, self.height, "yuv420p"
                streams = [(vs, video, self.fps)]
                if self._audio is not None:
                    as_ = out.add_stream("aac", rate=self.rate, layout="mono")
                    as_.codec_context.extradata = self._audio.extradata
                    streams.append((as_, audio, self.rate))
                for stream, packets, rate in streams:
                    for packet in packets:
                        offset = TS_OFFSET_S * rate  # packets are in 1/rate units
                        packet.pts = None if packet.pts is None else packet.pts + offset
                        packet.dts = None if packet.dts is None else packet.dts + offset
                        packet.stream = stream
                        out.mux(packet)
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

    def _close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class TeeWriter:
    """The job's writer as engines see it: frames go to the mp4 writer and to the segmenter."""

    def __init__(self, writer: Any, segmenter: Segmenter) -> None:
        self._writer = writer
        self._segmenter = segmenter

    def write(self, frames: np.ndarray) -> None:
        self._writer.write(frames)
        self._segmenter.write(frames)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)
