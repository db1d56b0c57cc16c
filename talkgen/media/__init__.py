"""Media: sniffing, probing, audio preparation, streaming video reading and writing (PyAV, Pillow).

Only `kinds` is imported eagerly; the other names load their submodule (and av, PIL, numpy) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from talkgen.media.kinds import Media, sniff

_LAZY = {
    "AVInfo": "probe",
    "ImageInfo": "probe",
    "load_image": "probe",
    "probe_av": "probe",
    "probe_image": "probe",
    "PreparedAudio": "audio",
    "decode_audio": "audio",
    "iter_audio": "audio",
    "loudness_gain": "audio",
    "prepare_audio": "audio",
    "VideoFrameReader": "frames",
    "fit_frame": "frames",
    "VideoWriter": "writer",
}

__all__ = [
    "AVInfo", "ImageInfo", "Media", "PreparedAudio", "VideoFrameReader", "VideoWriter",
    "decode_audio", "fit_frame", "iter_audio", "load_image", "loudness_gain", "prepare_audio",
    "probe_av", "probe_image", "sniff",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
