"""Where each model file lives under the models dir, and the sampling defaults that go with them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from talkgen.errors import EngineUnavailable
from talkgen.settings import Settings

WAN_DIR = "Wan2.1-I2V-14B-480P-Diffusers"
"""Wan2.1-I2V-14B in diffusers layout: transformer/, vae/, text_encoder/, tokenizer/, image_encoder/, …"""
WAN_ORIGINAL_DIR = "Wan2.1-I2V-14B-480P"
"""Optional: the DiT in Wan's original layout (used when present and no diffusers transformer is)."""
ADAPTERS = {1: "InfiniteTalk/single/infinitetalk.safetensors", 2: "InfiniteTalk/multi/infinitetalk.safetensors"}
WAV2VEC_DIR = "chinese-wav2vec2-base"
PRESET_FILE = "talkgen-preset.json"
TEXT_TOKENS = 512
NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
    "picture, messy background, three legs, many people in the background, walking backwards"
)


@dataclass(frozen=True)
class Preset:
    """Sampling defaults for a set of weights (requests override them)."""

    name: str = "infinitetalk-480p"
    steps: int = 40
    guidance_scale: float = 5.0
    audio_guidance_scale: float = 4.0
    shift: float = 7.0
    shift_720p: float = 11.0
    negative_prompt: str = NEGATIVE_PROMPT
    notes: dict[str, str] = field(default_factory=dict)

    def save(self, root: Path) -> None:
        (root / PRESET_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> Preset:
        path = root / PRESET_FILE
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class ModelFiles:
    """Paths of every component, resolved against the models dir and settings."""

    root: Path
    wan: Path
    transformer: Path
    adapters: dict[int, Path]
    wav2vec: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelFiles:
        root = Path(settings.models_dir).expanduser()
        wan = root / WAN_DIR
        transformer = settings.native_transformer
        if transformer is None:
            diffusers_dir = wan / "transformer"
            original = root / WAN_ORIGINAL_DIR
            transformer = original if not diffusers_dir.exists() and original.exists() else diffusers_dir
        return cls(root=root, wan=wan, transformer=Path(transformer).expanduser(),
                   adapters={n: root / p for n, p in ADAPTERS.items()}, wav2vec=root / WAV2VEC_DIR)

    @property
    def preset(self) -> Preset:
        return Preset.load(self.root)

    def required(self) -> dict[str, Path]:
        return {
            "transformer": self.transformer,
            "vae": self.wan / "vae",
            "text encoder": self.wan / "text_encoder",
            "tokenizer": self.wan / "tokenizer",
            "image encoder": self.wan / "image_encoder",
            "image processor": self.wan / "image_processor",
            "wav2vec2": self.wav2vec,
            "single-speaker adapter": self.adapters[1],
        }

    def check(self) -> None:
        """Raise `EngineUnavailable` listing every missing component (multi adapter: checked per job)."""
        missing = {name: path for name, path in self.required().items() if not path.exists()}
        if missing:
            raise EngineUnavailable(
                f"The native engine's weights are missing on this server ({', '.join(missing)}): an operator must "
                "run `talkgen models download infinitetalk-480p --dir <models dir>` (or `talkgen models tiny "
                "<models dir>` for CPU test weights), or point TALKGEN_MODELS_DIR at the models.",
                retryable=False,
                private=f"models dir {self.root}; missing: "
                + "; ".join(f"{name} ({path})" for name, path in missing.items()),
            )

    def adapter(self, speakers: int) -> Path:
        path = self.adapters[speakers]
        if not path.is_file():
            raise EngineUnavailable(
                f"The {'multi' if speakers == 2 else 'single'}-speaker InfiniteTalk adapter is missing on this "
                "server: an operator must run `talkgen models download infinitetalk-480p --dir <models dir>`.",
                retryable=False,
                private=f"expected at {path} (models dir {self.root})",
            )
        return path
