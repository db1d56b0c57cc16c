"""What a separator file is: its MelBand-RoFormer configuration, and where the seed's file lives.

No heavy imports here: the service reads these names without loading torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SEPARATOR_DIR = "MelBandRoFormer"
SEPARATOR_NAME = "MelBandRoformer_fp16.safetensors"
SEPARATOR_FILE = f"{SEPARATOR_DIR}/{SEPARATOR_NAME}"
"""The seed's file (Kijai/MelBandRoFormer_comfy), relative to the models dir: the default of
TALKGEN_SEPARATION_MODEL and where `talkgen models download` / `talkgen models tiny` put it."""
METADATA_KEY = "talkgen.separator"
"""safetensors metadata key holding a `SeparatorConfig` as JSON (the tiny preset writes it; the real file has
none and gets `SEED_CONFIG`)."""

SEED_MODEL: dict[str, Any] = {
    # kijai/ComfyUI-MelBandRoFormer nodes.py, MelBandRoFormerModelLoader (the settings of the seed's file;
    # the training-only multi-resolution STFT loss settings are left at the package's defaults).
    "dim": 384, "depth": 6, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
    "freq_transformer_depth": 1, "num_bands": 60, "dim_head": 64, "heads": 8, "attn_dropout": 0.0,
    "ff_dropout": 0.0, "flash_attn": True, "dim_freqs_in": 1025, "sample_rate": 44100, "stft_n_fft": 2048,
    "stft_hop_length": 441, "stft_win_length": 2048, "stft_normalized": False, "mask_estimator_depth": 2,
}


@dataclass(frozen=True)
class SeparatorConfig:
    """The model's constructor arguments (bs-roformer's ``MelBandRoformer``) and how audio is cut for it.

    ``chunk`` samples (at the model's ``sample_rate``) go through the model at a time; consecutive chunks
    start ``chunk // overlap`` samples apart and are cross-faded over ``chunk // fade_div`` samples: the
    seed's node runs 8 s chunks (352800 samples), overlap 2, fade a tenth of the chunk.
    """

    model: dict[str, Any] = field(default_factory=lambda: dict(SEED_MODEL))
    chunk: int = 352800
    overlap: int = 2
    fade_div: int = 10
    stem: str = "vocals"

    @property
    def sample_rate(self) -> int:
        return int(self.model.get("sample_rate", 44100))

    @property
    def channels(self) -> int:
        return 2 if self.model.get("stereo") else 1

    @property
    def step(self) -> int:
        return self.chunk // self.overlap

    @property
    def fade(self) -> int:
        return max(1, self.chunk // self.fade_div)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None) -> SeparatorConfig:
        """The config a file's metadata declares; the seed's when it declares none. ValueError if malformed."""
        raw = (metadata or {}).get(METADATA_KEY)
        if raw is None:
            return cls()
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise ValueError(f"{METADATA_KEY} metadata is not a separator config")
        config = cls(model=data["model"], chunk=int(data.get("chunk", 352800)),
                     overlap=int(data.get("overlap", 2)), fade_div=int(data.get("fade_div", 10)),
                     stem=str(data.get("stem", "vocals")))
        if config.overlap < 2 or config.chunk < 2 * config.overlap or config.fade > config.chunk - config.step:
            raise ValueError(f"chunk {config.chunk} / overlap {config.overlap} / fade_div {config.fade_div} do not fit")
        return config
