"""Registers the built-in engines (lazily: their heavy imports happen in the factory)."""

from __future__ import annotations

from talkgen.hookspecs import hookimpl


@hookimpl
def register_engines(register) -> None:  # type: ignore[no-untyped-def]
    """The native PyTorch engine (its torch/diffusers imports wait until a job needs it)."""
    from talkgen.engines import comfyui, native

    register("native", native.create, description="InfiniteTalk in PyTorch (diffusers Wan2.1 + audio adapter)")
    register("comfyui", comfyui.create, description="InfiniteTalk workflows on a ComfyUI server")
