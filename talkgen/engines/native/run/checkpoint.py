"""Resumable jobs: after each window, the frames it added (lossless FFV1) and the state to go on.

Layout under ``<checkpoint url>/<job id>/``:

- ``window-NNNNN.mkv``: the frames window N added, exactly as generated;
- ``state-NNNNN.pt``: motion frames, RNG state and colour reference after window N;
- ``state.json``: the index, written last: fingerprint, windows done, and the size and sha256 of every
  file it vouches for.

Nothing the index names is ever rewritten: a window's files get new names, every write is atomic (a
temporary file renamed into place on local disks; one PUT on object stores, which makes an object
visible whole or not at all), and the index moves on only after its files are complete. A crash at any
point leaves the previous index and its files intact. A checkpoint that is unreadable, incomplete or
belongs to other inputs is discarded with a warning and the job starts over. The service removes it only
once the video has been delivered.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem

from talkgen.errors import EngineFailed
from talkgen.settings import Settings

log = logging.getLogger(__name__)
INDEX = "state.json"
VERSION = 2


@dataclass
class Resume:
    """What a previous run of the job left: windows done, tensors to continue with."""

    windows_done: int
    tensors: dict[str, Any]


class DamagedCheckpoint(Exception):
    """A stored file does not match what the index says about it."""


def checkpoint_root(settings: Settings) -> str:
    """The configured URL, else ``<TALKGEN_WORK_DIR or temp>/talkgen-checkpoints`` (stable across runs)."""
    if settings.checkpoint_url:
        return settings.checkpoint_url.rstrip("/")
    parent = settings.work_dir or Path(tempfile.gettempdir())
    return str(Path(parent) / "talkgen-checkpoints")


def window_file(window: int) -> str:
    return f"window-{window:05d}.mkv"


def state_file(window: int) -> str:
    return f"state-{window:05d}.pt"


class Checkpoint:
    """One job's checkpoint folder on any fsspec filesystem."""

    def __init__(self, url: str, fingerprint: str, settings: Settings | None = None) -> None:
        options = settings.storage_options_for(fsspec.utils.get_protocol(url)) if settings is not None else {}
        self.fs, self.path = fsspec.core.url_to_fs(url, **options)
        self.url = url
        self.fingerprint = fingerprint
        self.files: dict[str, dict[str, Any]] = {}  # what the current index vouches for

    def _p(self, name: str) -> str:
        return f"{self.path}/{name}"

    # -- reading ---------------------------------------------------------------------------------------
    def load(self) -> Resume | None:
        """The previous run's state, or None (nothing stored, damaged, or made from other inputs)."""
        try:
            if not self.fs.exists(self._p(INDEX)):
                return None
            index = json.loads(self.fs.cat_file(self._p(INDEX)))
            if index.get("fingerprint") != self.fingerprint:
                return self.discard("belongs to other inputs or settings")
            done = int(index["windows_done"])
            files = dict(index["files"])
            if index.get("version") != VERSION or done < 1 or set(files) != _expected(done):
                return self.discard("is incomplete")
            for name, meta in files.items():
                size = self.fs.info(self._p(name)).get("size")
                if size != meta["size"]:
                    return self.discard(f"has {name} of {size} bytes, not {meta['size']}")
            self.files = files
            blob = self._read(state_file(done - 1))
            tensors = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            return Resume(windows_done=done, tensors=tensors)
        except Exception as exc:  # any damage at all: a checkpoint is an optimisation, never a reason to fail
            return self.discard(f"is unreadable ({type(exc).__name__}: {exc})")

    def frames(self, window: int) -> np.ndarray:
        """The frames window ``window`` added (exactly as generated); raises `EngineFailed` when damaged."""
        try:
            blob = self._read(window_file(window))
            with av.open(io.BytesIO(blob)) as container:
                return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        except Exception as exc:
            self.clear()
            raise EngineFailed(
                f"The checkpoint of this job was damaged ({type(exc).__name__}) and has been removed: retry the job "
                "and it starts over.", retryable=True,
            ) from exc

    def _read(self, name: str) -> bytes:
        blob = self.fs.cat_file(self._p(name))
        if hashlib.sha256(blob).hexdigest() != self.files[name]["sha256"]:
            raise DamagedCheckpoint(f"{name} does not match its checksum")
        return blob

    def discard(self, why: str) -> None:
        log.warning("checkpoint %s %s; starting over", self.url, why)
        self.clear()
        return None

    # -- writing ---------------------------------------------------------------------------------------
    def save(self, window: int, frames: np.ndarray, tensors: dict[str, Any]) -> None:
        """Record window ``window`` as done: its files first, then the index that names them."""
        self.fs.makedirs(self.path, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(on_cpu(tensors), buffer)  # a checkpoint written on a GPU resumes on any device
        files = {name: meta for name, meta in self.files.items() if not name.startswith("state-")}
        for name, blob in ((window_file(window), _lossless(frames)), (state_file(window), buffer.getvalue())):
            self._write(name, blob)
            files[name] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        index = {"version": VERSION, "fingerprint": self.fingerprint, "windows_done": window + 1, "files": files}
        self._write(INDEX, json.dumps(index, sort_keys=True).encode())
        previous, self.files = self.files, files
        for name in set(previous) - set(files):  # the state it replaced; a leftover would be harmless
            try:
                self.fs.rm(self._p(name))
            except OSError:
                log.debug("could not remove %s", name, exc_info=True)

    def _write(self, name: str, blob: bytes) -> None:
        write_atomic(self.fs, self._p(name), blob)

    def clear(self) -> None:
        """Remove the whole checkpoint (after delivery, or when it cannot be used)."""
        self.files = {}
        try:
            if self.fs.exists(self.path):
                self.fs.rm(self.path, recursive=True)
        except OSError:
            log.warning("could not remove checkpoint %s", self.url)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, blob: bytes) -> None:
    """``path`` holds ``blob`` whole, or keeps what it held: never a part of it."""
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        fs.pipe_file(path, blob)  # a single PUT: object stores never show a partial object


def _expected(done: int) -> set[str]:
    return {window_file(k) for k in range(done)} | {state_file(done - 1)}


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
