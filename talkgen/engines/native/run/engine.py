"""`NativeEngine`: InfiniteTalk in PyTorch, models loaded once per process and reused across jobs."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import torch

from talkgen.engines.native.devices.components import Components
from talkgen.engines.native.devices.gpu_errors import as_gpu_error
from talkgen.engines.native.devices.options import NativeOptions
from talkgen.engines.native.run.generate import SamplingParams, WindowLoop
from talkgen.engines.native.weights.layout import ModelFiles
from talkgen.settings import Settings

if TYPE_CHECKING:
    from talkgen.job import Job

log = logging.getLogger(__name__)
NAME = "native"


class NativeEngine:
    """The `Engine` protocol over `Components` and `WindowLoop`."""

    name = NAME

    def __init__(self, settings: Settings, components: Components | None = None) -> None:
        """Loads the models under the models dir, or runs ``components`` built elsewhere (benchmarks)."""
        self.settings = settings
        self.files = ModelFiles.from_settings(settings)
        self.options = NativeOptions.from_settings(settings)
        started = time.perf_counter()
        torch.set_grad_enabled(False)
        try:
            self.components = components or Components.from_files(self.files, self.options)
        except RuntimeError as exc:  # CUDA failing while the models load
            error = as_gpu_error(exc, "while loading the models", self.options.offload, self.options.vae_tiling)
            if error is None:
                raise
            raise error from exc
        self.load_seconds = time.perf_counter() - started
        self.model_set = self.files.model_set
        self.healthy = True
        self.last_timings = None
        self._busy = threading.Lock()
        log.info("native engine: %s weights from %s on %s/%s in %.1f s", self.model_set.name, self.files.root,
                 self.options.device, self.options.dtype, self.load_seconds)

    def generate(self, job: Job) -> None:
        """One job at a time: the models, their caches and the loaded adapter are shared state."""
        with self._busy, torch.no_grad():  # grad mode is per thread: set it for whichever thread runs the job
            self._generate(job)

    def _generate(self, job: Job) -> None:
        # checkpoints of other weights, or of the LoRA fused otherwise, do not resume this job
        lora = self.components.models.lora
        model_id = (f"{self.model_set.name}:{self.files.transformer}:{self.options.quant}:"
                    f"{0.0 if lora is None else lora.fused}:{self.options.vae_dtype}")
        preset = job.request.preset or self.options.preset
        self.files.check_preset(preset)
        loop = WindowLoop(self.components, job, SamplingParams.for_job(job, self.files, preset), model_id)
        try:
            params = loop.run()
        except RuntimeError as exc:
            plan = self.components.plan
            error = as_gpu_error(exc, f"at {job.width}x{job.height}", plan.offload if plan else self.options.offload,
                                 plan.vae_tiling if plan else self.options.vae_tiling)
            if error is None:
                raise
            if error.code == "gpu_failed":
                self.healthy = False  # the CUDA context is gone: only a new process can use the GPU again
            elif torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise error from exc
        finally:
            self.last_timings = loop.timings
        job.params.update(params)
        job.params.update({"model": self.model_set.name, "device": str(self.options.device),
                           "dtype": str(self.options.dtype).removeprefix("torch."), "quant": self.options.quant,
                           "compute_s": round(loop.timings.compute, 3)})

    def close(self) -> None:
        self.components = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
