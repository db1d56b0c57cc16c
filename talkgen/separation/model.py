"""The separator model: the safetensors file → bs-roformer's ``MelBandRoformer``, loaded once per process.

The seed's file (``MelBandRoformer_fp16.safetensors``, Kijai/MelBandRoFormer_comfy) holds fp16 weights under
the names bs-roformer 0.3.10's ``MelBandRoformer`` gives its parameters, for the configuration in
`SEED_MODEL`. Weights are loaded into a float32 model (as the seed's node does) on the separation device.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from talkgen.errors import EngineUnavailable
from talkgen.separation.chunking import separate_stream
from talkgen.separation.config import SeparatorConfig

SKIP_HINT = "a request can skip separation with `separate_vocals: false`"
ROTARY_SUFFIX = "rotary_embed.freqs"
"""Fixed (not learned) rotary frequencies: a file saved without these shared copies is still complete."""

_cache: dict[tuple[str, str, int, int], Separator] = {}
_cache_lock = threading.Lock()
_stats = {"loads": 0, "chunks": 0}


def stats() -> dict[str, int]:
    """How many times this process loaded a separator file, and ran a chunk through a separator."""
    return dict(_stats)


def clear_cache() -> None:
    """Forget the loaded separators (their memory is freed once no job holds one)."""
    with _cache_lock:
        _cache.clear()


class Separator:
    """A loaded separator: runs chunks on its device; `stream` separates audio of any length."""

    def __init__(self, module: Any, config: SeparatorConfig, device: str, path: Path) -> None:
        self.module = module
        self.config = config
        self.device = device
        self.path = path
        self._lock = threading.Lock()  # one chunk at a time: jobs preparing side by side share the model

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """``(channels, n)`` float32 at the model's rate → the stem, same shape."""
        import torch

        with self._lock, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # bs-roformer's sdp_kernel context (deprecated)
            x = torch.from_numpy(np.ascontiguousarray(chunk, np.float32))[None].to(self.device)
            y = self.module(x)
            if y.ndim == 4:  # several stems: (batch, stem, channel, time)
                y = y[:, 0]
            _stats["chunks"] += 1
            return y[0].float().cpu().numpy()

    def one_shot(self, audio: np.ndarray) -> np.ndarray:
        """The whole of ``audio`` through the model at once (reference for short clips; memory grows with it)."""
        return self(audio)

    def stream(self, blocks: Iterable[np.ndarray],
               on_chunk: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
        """Separate a stream of ``(channels, n)`` blocks at the model's rate, in overlapping chunks."""
        cfg = self.config
        return separate_stream(self, blocks, channels=cfg.channels, chunk=cfg.chunk, step=cfg.step,
                               fade=cfg.fade, on_chunk=on_chunk)


def resolve_device(setting: str, engine_device: str = "auto") -> str:
    """``auto``: the native engine's device when it names one, else cuda when present, else cpu."""
    import torch

    setting = (setting or "auto").strip().lower()
    if setting == "auto":
        if engine_device and engine_device.strip().lower() != "auto":
            setting = engine_device.strip().lower()
        else:
            return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(
            f"Vocal separation is set to run on {setting} (TALKGEN_SEPARATION_DEVICE), but this server has no "
            f"CUDA device: set TALKGEN_SEPARATION_DEVICE=auto or cpu; {SKIP_HINT}.", retryable=False)
    try:
        torch.device(setting)
    except (RuntimeError, ValueError):
        raise EngineUnavailable(
            f"TALKGEN_SEPARATION_DEVICE={setting!r} is not a torch device: use auto, cpu, cuda or cuda:N.",
            retryable=False) from None
    return setting


def load_separator(path: Path, device: str, *, fix: str = "") -> Separator:
    """The separator in ``path`` on ``device``, loaded once per process (cached by path, device and file).

    Raises `EngineUnavailable` naming the file when it is missing, damaged or not a separator of the expected
    layout; ``fix`` says how an operator gets the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise EngineUnavailable(
            f"The vocal separator's weights ({path.name}) are missing on this server: {fix or fix_for()}; "
            f"{SKIP_HINT}.", retryable=False, private=f"expected at {path}")
    st = path.stat()
    key = (str(path.resolve()), device, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _load(path, device, fix or fix_for())
            _cache[key] = cached
        return cached


def fix_for(models_dir: Path | str = "<models dir>") -> str:
    """What an operator runs to get the separator file."""
    return (f"an operator must run `talkgen models download infinitetalk-480p --dir {models_dir}` (it fetches only "
            f"what is missing; `talkgen models tiny {models_dir}` writes CPU test weights) or point "
            "TALKGEN_SEPARATION_MODEL at the file")


def _load(path: Path, device: str, fix: str) -> Separator:
    try:
        import torch
        from bs_roformer import MelBandRoformer
        from safetensors import safe_open
    except ImportError as exc:
        raise EngineUnavailable(
            f"Vocal separation needs the native extra (torch, bs-roformer): pip install 'talkgen[native]' "
            f"({exc.name} is missing); {SKIP_HINT}.", retryable=False) from None

    def damaged(problem: str) -> EngineUnavailable:
        return EngineUnavailable(
            f"The vocal separator's weights ({path.name}) are damaged or not a MelBand-RoFormer vocal model "
            f"({problem[:300]}): delete it, then {fix}; {SKIP_HINT}.", retryable=False, private=str(path))

    try:
        with safe_open(str(path), framework="pt") as fh:
            config = SeparatorConfig.from_metadata(fh.metadata())
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except ValueError as exc:
        raise damaged(str(exc)) from None
    except Exception as exc:  # safetensors' SafetensorError (a truncated or foreign file), OSError
        raise damaged(f"{type(exc).__name__}: {exc}") from None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the constructor's probe STFT warns about its missing window
            module = MelBandRoformer(**config.model, match_input_audio_length=True)
    except Exception as exc:
        raise damaged(f"its config does not build: {type(exc).__name__}: {exc}") from None
    expected = module.state_dict()
    for name in expected:
        if name not in state and name.endswith(ROTARY_SUFFIX):
            state[name] = expected[name]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing tensors (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]})" if wrong else ""]
        raise damaged(", ".join(p for p in parts if p))
    module.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    del state
    module.eval().to(device)
    _stats["loads"] += 1
    return Separator(module, config, device, path)
