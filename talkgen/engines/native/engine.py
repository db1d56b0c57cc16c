"""`NativeEngine`: InfiniteTalk in PyTorch, models loaded once per process and reused across jobs."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch

from talkgen.engines.native.components import Components
from talkgen.engines.native.generate import WindowLoop
from talkgen.engines.native.layout import ModelFiles
from talkgen.engines.native.options import NativeOptions
from talkgen.errors import OutOfMemory
from talkgen.settings import Settings

if TYPE_CHECKING:
    from talkgen.job import Job

log = logging.getLogger(__name__)
NAME = "native"


class NativeEngine:
    """The `Engine` protocol over `Components` and `WindowLoop`."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files = ModelFiles.from_settings(settings)
        self.options = NativeOptions.from_settings(settings)
        started = time.perf_counter()
        torch.set_grad_enabled(False)
        self.components = Components.from_files(self.files, self.options)
        self.load_seconds = time.perf_counter() - started
        self.preset = self.files.preset
        self.healthy = True
        self.last_timings = None
        log.info("native engine: %s weights from %s on %s/%s in %.1f s", self.preset.name, self.files.root,
                 self.options.device, self.options.dtype, self.load_seconds)

    def generate(self, job: Job) -> None:
        loop = WindowLoop(self.components, job, self.preset, f"{self.preset.name}:{self.files.transformer}")
        try:
            params = loop.run()
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemory(
                f"The GPU ran out of memory at {job.width}x{job.height}: set TALKGEN_NATIVE_OFFLOAD=model (or group) "
                "and TALKGEN_NATIVE_VAE_TILING=true, or use a smaller size. Finished windows are checkpointed: "
                "rerun with the same job_id to continue.",
                retryable=True,
            ) from exc
        finally:
            self.last_timings = loop.timings
        job.params.update(params)
        job.params.update({"model": self.preset.name, "device": str(self.options.device),
                           "dtype": str(self.options.dtype).removeprefix("torch."),
                           "compute_s": round(loop.timings.compute, 3)})

    def close(self) -> None:
        self.components = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
