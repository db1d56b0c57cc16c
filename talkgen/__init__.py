"""talkgen: portrait + speech → lip-synced talking video (InfiniteTalk), anywhere.

    import talkgen
    result = talkgen.generate({"image_path": "face.png", "wav_path": "speech.wav"})
    result.save("out.mp4")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from talkgen.errors import TalkgenError
from talkgen.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = [
    "Mode", "Settings", "TalkGen", "TalkRequest", "TalkResult", "TalkgenError", "__version__", "generate",
    "hookimpl",
]

if TYPE_CHECKING:
    from talkgen.mode import Mode
    from talkgen.request import TalkRequest
    from talkgen.result import TalkResult
    from talkgen.service import TalkGen, generate
    from talkgen.settings import Settings

_LAZY = {
    "Mode": "talkgen.mode", "TalkRequest": "talkgen.request", "TalkResult": "talkgen.result",
    "TalkGen": "talkgen.service", "generate": "talkgen.service", "Settings": "talkgen.settings",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so `import talkgen` stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'talkgen' has no attribute {name!r}")
