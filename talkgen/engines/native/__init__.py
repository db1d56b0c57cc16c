"""The native PyTorch InfiniteTalk engine (``pip install 'talkgen[native]'``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from talkgen.settings import Settings


def create(settings: Settings):  # type: ignore[no-untyped-def]
    """Engine factory: imports torch/diffusers only when the engine is first used."""
    import importlib.util

    from talkgen.errors import EngineUnavailable

    missing = [m for m in ("torch", "diffusers", "transformers", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailable(
            f"The native engine needs {', '.join(missing)}: install it with `pip install torch` (the build for "
            "your GPU) and then `pip install 'talkgen[native]'`.",
            retryable=False,
        )
    from talkgen.engines.native.run.engine import NativeEngine

    return NativeEngine(settings)
