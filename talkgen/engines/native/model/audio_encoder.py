"""wav2vec2 features at 25 fps, driven as InfiniteTalk does: conv features interpolated to the video
frame rate *before* the transformer encoder, and the outputs of every encoder layer kept.

Long audio is encoded in segments (with context on both sides) and written to a memory-mapped file, so
memory does not grow with duration; up to `SEGMENT_S` seconds it is one pass, exactly like upstream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEGMENT_S = 60.0
CONTEXT_S = 2.0


class AudioEncoder:
    """``encode(track)`` → ``[frames, layers, hidden]`` float32 (a memmap when ``out`` is given)."""

    def __init__(self, model, feature_extractor, device: torch.device, dtype: torch.dtype) -> None:  # type: ignore[no-untyped-def]
        self.model = model
        self.feature_extractor = feature_extractor
        self.device = device
        self.dtype = dtype
        cfg = model.config
        self.layers = cfg.num_hidden_layers
        self.hidden = cfg.hidden_size

    @torch.no_grad()
    def features(self, samples: np.ndarray, rate: int, frames: int) -> torch.Tensor:
        """One pass: ``samples`` (mono, ``rate`` Hz) → ``[frames, layers, hidden]`` on the CPU."""
        values = self.feature_extractor(samples, sampling_rate=rate, return_tensors="pt").input_values
        values = values.to(self.device, self.dtype)
        conv = self.model.feature_extractor(values).transpose(1, 2)  # B, T50, C
        conv = F.interpolate(conv.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = self.model.feature_projection(conv)
        outputs: list[torch.Tensor] = []

        def keep(_module, _inputs, out) -> None:  # type: ignore[no-untyped-def]
            outputs.append(out[0] if isinstance(out, tuple) else out)

        hooks = [layer.register_forward_hook(keep) for layer in self.model.encoder.layers]
        try:
            self.model.encoder(hidden, return_dict=True)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(outputs, dim=2)[0].float().cpu()  # frames, layers, hidden

    def encode(self, track: np.ndarray, rate: int, fps: int, frames: int, out: Path | None = None) -> np.ndarray:
        """Features for ``frames`` video frames of ``track`` (length ``frames / fps`` seconds)."""
        per_frame = rate // fps
        shape = (frames, self.layers, self.hidden)
        store = (np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape) if out is not None
                 else np.empty(shape, np.float32))
        segment = int(SEGMENT_S * fps)
        context = int(CONTEXT_S * fps)
        if frames <= segment:
            store[:] = self.features(track[: frames * per_frame], rate, frames).numpy()
        else:
            for start in range(0, frames, segment):
                end = min(frames, start + segment)
                lo, hi = max(0, start - context), min(frames, end + context)
                feats = self.features(track[lo * per_frame: hi * per_frame], rate, hi - lo)
                store[start:end] = feats[start - lo: end - lo].numpy()
        if isinstance(store, np.memmap):
            store.flush()
        return store
