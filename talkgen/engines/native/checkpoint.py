"""Resumable jobs: after each window, the frames it added (lossless FFV1) and the state to go on.

Layout under ``<checkpoint url>/<job id>/``: ``state.json`` (fingerprint, windows done), ``state.pt``
(motion frames, RNG state, colour reference) and ``window-NNNNN.mkv`` per finished window. A rerun of the
same job id with the same request replays the stored frames into the writer and continues with the
next window, producing the same video as an uninterrupted run. The checkpoint is removed on success.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import fsspec
import numpy as np
import torch

from talkgen.settings import Settings

log = logging.getLogger(__name__)
STATE = "state.json"
TENSORS = "state.pt"


@dataclass
class Resume:
    """What a previous run of the job left: windows done, tensors to continue with."""

    windows_done: int
    tensors: dict[str, Any]


def checkpoint_root(settings: Settings) -> str:
    """The configured URL, else ``<TALKGEN_WORK_DIR or temp>/talkgen-checkpoints`` (stable across runs)."""
    if settings.checkpoint_url:
        return settings.checkpoint_url.rstrip("/")
    parent = settings.work_dir or Path(tempfile.gettempdir())
    return str(Path(parent) / "talkgen-checkpoints")


class Checkpoint:
    """One job's checkpoint folder on any fsspec filesystem."""

    def __init__(self, url: str, fingerprint: str, settings: Settings | None = None) -> None:
        options = settings.storage_options_for(fsspec.utils.get_protocol(url)) if settings is not None else {}
        self.fs, self.path = fsspec.core.url_to_fs(url, **options)
        self.url = url
        self.fingerprint = fingerprint

    def _p(self, name: str) -> str:
        return f"{self.path}/{name}"

    def load(self) -> Resume | None:
        """The previous run's state, or None (nothing stored, or it belongs to a different request)."""
        try:
            if not self.fs.exists(self._p(STATE)):
                return None
            state = json.loads(self.fs.cat_file(self._p(STATE)))
        except (OSError, ValueError):
            log.warning("checkpoint %s is unreadable; starting over", self.url)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to a different request; starting over", self.url)
            self.clear()
            return None
        tensors = torch.load(io.BytesIO(self.fs.cat_file(self._p(TENSORS))), map_location="cpu", weights_only=True)
        return Resume(windows_done=int(state["windows_done"]), tensors=tensors)

    def frames(self, window: int) -> np.ndarray:
        """The frames window ``window`` added (exactly as generated)."""
        with self.fs.open(self._p(f"window-{window:05d}.mkv"), "rb") as fh, av.open(fh) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    def save(self, window: int, frames: np.ndarray, tensors: dict[str, Any]) -> None:
        """Record window ``window`` as done. The state file is written last, so a crash mid-save is harmless."""
        self.fs.makedirs(self.path, exist_ok=True)
        self.fs.pipe_file(self._p(f"window-{window:05d}.mkv"), _lossless(frames))
        buffer = io.BytesIO()
        torch.save(on_cpu(tensors), buffer)  # a checkpoint written on a GPU resumes on any device
        self.fs.pipe_file(self._p(TENSORS), buffer.getvalue())
        self.fs.pipe_file(self._p(STATE), json.dumps({"fingerprint": self.fingerprint,
                                                      "windows_done": window + 1}).encode())

    def clear(self) -> None:
        try:
            if self.fs.exists(self.path):
                self.fs.rm(self.path, recursive=True)
        except OSError:
            log.warning("could not remove checkpoint %s", self.url)


def on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (in dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


def _lossless(frames: np.ndarray) -> bytes:
    """``[T, H, W, 3]`` uint8 → FFV1 (lossless RGB) in Matroska."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()
