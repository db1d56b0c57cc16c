"""The tiny preset's vocal separator: seeded random weights in the seed file's layout, with a tiny config.

Same file name and place as the real ``MelBandRoformer_fp16.safetensors``, same tensor names (bs-roformer's
``MelBandRoformer``), fp16 like the real file, so the real loading and chunking code runs on CPU in tests. The
config is stored in the file's safetensors metadata (the real file has none and gets the seed's config).

The weights are random, except that the mask estimators' output layers are biased towards a mask of 1 (and
their random weights scaled down): the tiny "separator" passes the speech through, slightly perturbed, so
pipelines and tests that watch a speaker's activity still see it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from talkgen.separation.config import METADATA_KEY, SeparatorConfig

TINY_SEPARATOR = SeparatorConfig(
    model={"dim": 16, "depth": 1, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
           "freq_transformer_depth": 1, "num_bands": 8, "dim_head": 8, "heads": 2, "attn_dropout": 0.0,
           "ff_dropout": 0.0, "flash_attn": True, "sample_rate": 44100, "stft_n_fft": 512, "stft_hop_length": 256,
           "stft_win_length": 512, "stft_normalized": False, "mask_estimator_depth": 1},
    chunk=88200,  # 2 s chunks (the real model's are 8 s): short test clips still cross chunk boundaries
)
PASS_GATE = 4.0
"""Bias of the mask gates (sigmoid ≈ 0.98) when the tiny separator passes speech through."""
PASS_WEIGHT_SCALE = 0.1


def write_tiny_separator(path: Path, seed: int = 0, *, passthrough: bool = True,
                         config: SeparatorConfig | None = None) -> Path:
    """Write a tiny random separator to ``path`` (parents created) and return ``path``."""
    import warnings

    import torch
    from bs_roformer import MelBandRoformer
    from safetensors.torch import save_file

    config = config or TINY_SEPARATOR
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constructor's probe STFT warns about its missing window
        module = MelBandRoformer(**config.model)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if passthrough:
        _bias_to_passthrough(module, state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(path),
              metadata={METADATA_KEY: config.to_json()})
    path.chmod(path.stat().st_mode | 0o444)
    return path


def _bias_to_passthrough(module: object, state: dict) -> None:
    """Each band's mask ≈ (1 + 0j) · sigmoid(PASS_GATE): GLU halves are (real, imag) pairs, then gates."""
    import torch

    for e, estimator in enumerate(module.mask_estimators):  # type: ignore[attr-defined]
        for b, band in enumerate(estimator.to_freqs):
            mlp = band[0]
            last = len(mlp) - 1
            prefix = f"mask_estimators.{e}.to_freqs.{b}.0.{last}"
            bias = state[f"{prefix}.bias"]
            half = bias.shape[0] // 2
            values = torch.zeros_like(bias)
            values[:half:2] = 1.0  # real parts
            values[half:] = PASS_GATE
            state[f"{prefix}.bias"] = values
            state[f"{prefix}.weight"] = state[f"{prefix}.weight"] * PASS_WEIGHT_SCALE


def tiny_config(**changes: object) -> SeparatorConfig:
    """`TINY_SEPARATOR` with some fields changed (tests: other chunk sizes)."""
    return replace(TINY_SEPARATOR, **changes)  # type: ignore[arg-type]
