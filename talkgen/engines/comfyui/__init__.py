"""The ComfyUI engine: drives a ComfyUI server with InfiniteTalk workflows (``pip install 'talkgen[comfyui]'``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talkgen.settings import Settings


def create(settings: Settings):  # type: ignore[no-untyped-def]
    """Engine factory: connects to the configured server when the engine is first used."""
    import importlib.util

    from talkgen.errors import EngineUnavailable

    missing = [m for m in ("httpx", "websocket") if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailable("The ComfyUI engine needs websocket-client: `pip install 'talkgen[comfyui]'`.",
                                retryable=False)
    from talkgen.engines.comfyui.engine import ComfyUIEngine

    return ComfyUIEngine(settings)
