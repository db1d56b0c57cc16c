"""Where each model file lives under the models dir, and the sampling defaults that go with them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from talkgen.errors import EngineUnavailable
from talkgen.settings import Settings

WAN_DIR = "Wan2.1-I2V-14B-480P-Diffusers"
"""Wan2.1-I2V-14B in diffusers layout: transformer/, vae/, text_encoder/, tokenizer/, image_encoder/, …"""
WAN_ORIGINAL_DIR = "Wan2.1-I2V-14B-480P"
"""Optional: the DiT in Wan's original layout (used when present and no diffusers transformer is)."""
ADAPTERS = {1: "InfiniteTalk/single/infinitetalk.safetensors", 2: "InfiniteTalk/multi/infinitetalk.safetensors"}
WAV2VEC_DIR = "chinese-wav2vec2-base"
PRESET_FILE = "talkgen-presets.json"
TEXT_TOKENS = 512
NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
    "picture, messy background, three legs, many people in the background, walking backwards"
)


PRESETS = ("fast", "quality")


@dataclass(frozen=True)
class SamplingPreset:
    """How a job samples unless the request says otherwise: steps, guidance, shift, and an optional LoRA
    (a path under the models dir) run at ``lora_strength``."""

    steps: int
    guidance_scale: float
    audio_guidance_scale: float
    shift: float
    shift_720p: float
    lora: str | None = None
    lora_strength: float = 1.0
    source: str = ""

    def passes_per_step(self) -> int:
        from talkgen.engines.native.run.sampler import passes

        return len(passes(self.guidance_scale, self.audio_guidance_scale))


FAST = SamplingPreset(
    steps=4, guidance_scale=1.0, audio_guidance_scale=2.0, shift=2.0, shift_720p=2.0,
    lora="loras/Lightx2v/lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors",
    source="lightx2v step/CFG-distill LoRA (rank 64, the seed's file) at strength 1; 4 steps as the LoRA was "
           "distilled for; text guidance 1 (CFG distilled) and audio guidance 2 with shift 2, as InfiniteTalk's "
           "README recommends with this LoRA",
)
QUALITY = SamplingPreset(
    steps=40, guidance_scale=5.0, audio_guidance_scale=4.0, shift=7.0, shift_720p=11.0,
    source="upstream InfiniteTalk's defaults (generate_infinitetalk.py): 40 steps, text 5, audio 4, shift 7 "
           "(11 at 720p)",
)


@dataclass(frozen=True)
class ModelSet:
    """What a models dir holds (its name) and the sampling presets that go with those weights."""

    name: str = "infinitetalk-480p"
    presets: dict[str, SamplingPreset] = field(default_factory=lambda: {"fast": FAST, "quality": QUALITY})
    negative_prompt: str = NEGATIVE_PROMPT
    notes: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    """Where this set keeps the DiT and adapters when not at the default paths (relative to the models dir):
    ``{"transformer": path, "adapters": {"1": path, "2": path}}``, e.g. the seed's fp8 single files."""

    def preset(self, name: str) -> SamplingPreset:
        return self.presets[name]

    def save(self, root: Path) -> None:
        (root / PRESET_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSet:
        presets = {name: SamplingPreset(**value) for name, value in data.get("presets", {}).items()}
        missing = [name for name in PRESETS if name not in presets]
        if missing:
            raise ValueError(f"no preset {', '.join(missing)}")
        return cls(name=data.get("name", cls.name), presets=presets,
                   negative_prompt=data.get("negative_prompt", NEGATIVE_PROMPT), notes=data.get("notes", {}),
                   files=data.get("files", {}))

    @classmethod
    def load(cls, root: Path) -> ModelSet:
        """The set described in ``root``'s preset file; the real 480p set's defaults when there is none."""
        path = root / PRESET_FILE
        if not path.is_file():
            return cls()
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise EngineUnavailable(
                f"{path} is not a talkgen model-set file ({exc}): rerun `talkgen models download` (or `talkgen "
                "models tiny`) to write it again.", retryable=False) from exc


@dataclass(frozen=True)
class ModelFiles:
    """Paths of every component, resolved against the models dir and settings."""

    root: Path
    wan: Path
    transformer: Path
    adapters: dict[int, Path]
    wav2vec: Path
    model_set: ModelSet = field(default_factory=ModelSet)  # read once: the presets and file paths of the set

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelFiles:
        root = Path(settings.models_dir).expanduser()
        wan = root / WAN_DIR
        model_set = ModelSet.load(root)
        files = model_set.files
        transformer = settings.native_transformer
        if transformer is None and "transformer" in files:
            transformer = root / files["transformer"]
        if transformer is None:
            diffusers_dir = wan / "transformer"
            original = root / WAN_ORIGINAL_DIR
            transformer = original if not diffusers_dir.exists() and original.exists() else diffusers_dir
        return cls(root=root, wan=wan, transformer=Path(transformer).expanduser(),
                   adapters={n: root / files.get("adapters", {}).get(str(n), p) for n, p in ADAPTERS.items()},
                   wav2vec=root / WAV2VEC_DIR, model_set=model_set)

    def preset_lora(self, preset: str) -> Path | None:
        """The LoRA file ``preset`` runs with (None: none)."""
        lora = self.model_set.preset(preset).lora
        return None if lora is None else self.root / lora

    def missing_preset_lora(self, preset: str) -> Path | None:
        """Where ``preset``'s LoRA should be when it is not there (None: present, or no LoRA)."""
        path = self.preset_lora(preset)
        return path if path is not None and not path.is_file() else None

    def check_preset(self, preset: str) -> None:
        """`EngineUnavailable` naming the file when ``preset``'s LoRA is missing."""
        path = self.missing_preset_lora(preset)
        if path is not None:
            raise EngineUnavailable(
                f"The {preset} preset's LoRA is missing on this server: an operator must run `talkgen models "
                f"download {self.model_set.name}` (it fetches only what is missing), or set "
                f"TALKGEN_NATIVE_PRESET to a preset without it.", retryable=False,
                private=f"expected at {path} (models dir {self.root})")

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

    def missing(self) -> dict[str, Path]:
        """The required components that are not there, by name."""
        return {name: path for name, path in self.required().items() if not path.exists()}

    def check(self) -> None:
        """Raise `EngineUnavailable` listing every missing component (multi adapter: checked per job)."""
        missing = self.missing()
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
