"""What the writer hands a streaming consumer at each cut: the encoded packets of one part of the video."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av


@dataclass(frozen=True)
class Coded:
    """One encoded packet, copied out of PyAV: its bytes and timestamps in its stream's clock."""

    data: bytes
    pts: int | None
    dts: int | None
    key: bool

    @classmethod
    def of(cls, packet: av.Packet, units: int) -> Coded:
        """Copy ``packet``; timestamps become counts of ``1/units`` s (frames or samples)."""
        scale = packet.time_base * units if packet.time_base is not None else Fraction(1)
        pts = None if packet.pts is None else int(packet.pts * scale)
        dts = None if packet.dts is None else int(packet.dts * scale)
        return cls(bytes(packet), pts, dts, packet.is_keyframe)


@dataclass
class Part:
    """The frames since the previous cut (one closed GOP: its first frame is an IDR frame) and the AAC
    packets that start before its last frame ends. Video timestamps count frames, audio ones samples."""

    first_frame: int
    frames: int
    final: bool
    video: list[Coded] = field(default_factory=list)
    audio: list[Coded] = field(default_factory=list)
    rate: int = 0  # the soundtrack's sample rate (0: no audio)
    audio_config: bytes | None = None  # the AAC decoder configuration
