"""Which workflow flavour runs a job: what each needs from the server, what each can do, and the choice.

``native`` (ComfyUI's core InfiniteTalk nodes) runs one prompt per window: progress, cancel and memory per
window. ``wrapper`` (the seed's WanVideoWrapper stack) runs one prompt per job and is the only one that plays
two speakers at once (``audio_type: para``, the seed's two-speaker mode). ``auto`` (the default) takes
``native`` where it can run the job and the server has its nodes and model files, else ``wrapper``; the
server's nodes are checked once, when the engine starts, its model files per job until they are all there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from talkgen.errors import EngineUnavailable, InvalidRequest

FLAVOURS = ("native", "wrapper")
"""In order of preference for ``auto``."""
REQUIRED_NODES = {"native": ["WanInfiniteTalkToVideo", "ModelPatchLoader", "AudioEncoderLoader", "LoadVideo",
                             "GetVideoComponents", "SaveVideo"],
                  "wrapper": ["WanVideoSampler", "MultiTalkWav2VecEmbeds", "WanVideoImageToVideoMultiTalk",
                              "Wav2VecModelLoader", "VHS_VideoCombine", "VHS_LoadVideo", "ImageResizeKJv2"]}
INSTALL_HINT = {"native": "ComfyUI >= 0.11 (core InfiniteTalk nodes)",
                "wrapper": "the ComfyUI-WanVideoWrapper, ComfyUI-VideoHelperSuite and ComfyUI-KJNodes packs at the "
                           "commits in talkgen's workflows/versions.json"}


@dataclass(frozen=True)
class ServerFlavours:
    """The node classes each flavour lacks on one server (empty: it can run there)."""

    missing: dict[str, list[str]]

    @classmethod
    def check(cls, has_node: Callable[[str], bool], flavours: tuple[str, ...] = FLAVOURS) -> ServerFlavours:
        return cls({f: [c for c in REQUIRED_NODES[f] if not has_node(c)] for f in flavours})

    @property
    def available(self) -> list[str]:
        return [f for f, lacking in self.missing.items() if not lacking]

    def lacks(self, flavour: str) -> str:
        """What ``flavour`` lacks here, and what provides it."""
        return f"{', '.join(self.missing[flavour])} ({INSTALL_HINT[flavour]})"


def plays(flavour: str, speakers: int, audio_type: str | None) -> bool:
    """Whether ``flavour`` can render this mode: the core node plays two speakers in turns only."""
    return not (flavour == "native" and speakers == 2 and audio_type == "para")


def candidates(setting: str, server: ServerFlavours, speakers: int, audio_type: str | None) -> list[str]:
    """The flavours that may run one job, best first: ``setting`` if explicit (refused, naming the one that would
    work, when it cannot play the job), else every installed flavour that plays it."""
    if setting != "auto":
        if not plays(setting, speakers, audio_type):
            raise InvalidRequest("ComfyUI's core InfiniteTalk node (TALKGEN_COMFYUI_FLAVOUR=native) plays two speakers "
                                 "in turns only: use audio_type 'add', or the wrapper flavour "
                                 "(TALKGEN_COMFYUI_FLAVOUR=wrapper or auto) or the native engine for 'para'.",
                                 field="audio_type")
        return [setting]
    fits = [f for f in FLAVOURS if plays(f, speakers, audio_type)]
    if found := [f for f in fits if f in server.available]:
        return found
    if fits == ["wrapper"]:
        raise EngineUnavailable("Two speakers talking at once (audio_type 'para', the seed's two-speaker mode) need "
                                f"the wrapper flavour, and this ComfyUI server lacks {server.lacks('wrapper')}: "
                                "install them, send audio_type 'add' (turns), or use the native engine.",
                                retryable=False, field="audio_type")
    raise EngineUnavailable(_none_installed(server), retryable=False)


def _none_installed(server: ServerFlavours) -> str:
    lacking = "; ".join(f"{f} lacks {server.lacks(f)}" for f in server.missing)
    return f"This ComfyUI server can run no talkgen workflow flavour: {lacking}."


def require_any(server: ServerFlavours, url: str) -> None:
    """At start: refuse a server that can run no flavour, saying what each one lacks."""
    if not server.available:
        raise EngineUnavailable(f"ComfyUI at {url}: {_none_installed(server)}", retryable=False)
