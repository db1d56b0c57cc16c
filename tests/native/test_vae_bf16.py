"""`TALKGEN_NATIVE_VAE_DTYPE=bf16`: the VAE encodes and decodes in bf16, frames within a stated tolerance.

Measured (tiny preset, random VAE weights, CPU): a two-window job's decoded frames differ from the fp32
VAE's by a mean of 4.8 levels of 255 (bf16 DiT weights and compute: 4.5; another seed: 30.7); the bound is
about twice that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.native.conftest import request
from tests.support.video_check import decode

FRAME_MEAN_DIFF = 10.0


def test_bf16_vae_job_is_close_to_fp32(native_service, native_settings, native_media: Path, tmp_path: Path):
    from talkgen.service import TalkGen

    native_service.generate(request(native_media), output=str(tmp_path / "fp32.mp4"))
    service = TalkGen(native_settings.model_copy(update={"native_vae_dtype": "bf16", "work_dir": tmp_path / "w"}))
    try:
        service.generate(request(native_media), output=str(tmp_path / "bf16.mp4"))
        vae = service._engine("native").components.vae
        assert next(vae.parameters()).dtype == torch.bfloat16
    finally:
        service.close()
    video, reference = decode(tmp_path / "bf16.mp4"), decode(tmp_path / "fp32.mp4")
    assert video.count == reference.count == round(25 * 3.4)
    diff = np.mean([np.abs(a.astype(float) - b.astype(float)).mean()
                    for a, b in zip(video.frames, reference.frames, strict=True)])
    print(f"mean frame difference, bf16 vs fp32 VAE: {diff:.2f} / 255")
    assert 0 < diff < FRAME_MEAN_DIFF
