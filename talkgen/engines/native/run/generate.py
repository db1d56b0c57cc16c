"""One job on the native engine: the streaming window loop, checkpointed after every window."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from talkgen.engines.native.model.speakers import speaker_masks
from talkgen.engines.native.run.checkpoint import Checkpoint, Resume, checkpoint_root
from talkgen.engines.native.run.colour import match_colours, reference_stats
from talkgen.engines.native.run.output_worker import OutputWorker
from talkgen.engines.native.run.sampler import passes, sample, timesteps
from talkgen.engines.native.run.windows import audio_windows, first_frame_mask, frame_to_tensor, video_to_uint8
from talkgen.errors import EngineFailed, InvalidRequest
from talkgen.media.boxes import default_boxes
from talkgen.mode import ALL_ROLES
from talkgen.plan import Window, window_source_frame
from talkgen.sources.base import file_sha256

if TYPE_CHECKING:
    from talkgen.engines.native.devices.components import Components
    from talkgen.engines.native.weights.layout import ModelFiles
    from talkgen.job import Job

log = logging.getLogger(__name__)
AREA_720P = 1280 * 720
_NOT_IN_FRAMES = {"job_id", "output_url", "network_volume", "force_offload", "stream",
                  *(name for role in ALL_ROLES for name in role.fields)}
"""Request fields that do not change the frames (the media count by their bytes, not their references)."""


@dataclass
class SamplingParams:
    preset: str
    lora: Path | None  # the preset's LoRA file, run at lora_strength
    lora_strength: float
    steps: int
    guidance_scale: float
    audio_guidance_scale: float
    shift: float
    prompt: str
    negative_prompt: str

    @classmethod
    def for_job(cls, job: Job, files: ModelFiles, preset_name: str) -> SamplingParams:
        """The preset's values, each replaced by the request's own where it gives one."""
        req = job.request
        models = files.model_set
        preset = models.preset(preset_name)
        big = req.resolution == "720p" or job.width * job.height >= 0.9 * AREA_720P
        return cls(
            preset=preset_name, lora=files.preset_lora(preset_name), lora_strength=preset.lora_strength,
            steps=req.steps or preset.steps,
            guidance_scale=preset.guidance_scale if req.guidance_scale is None else req.guidance_scale,
            audio_guidance_scale=(preset.audio_guidance_scale if req.audio_guidance_scale is None
                                  else req.audio_guidance_scale),
            shift=req.shift or (preset.shift_720p if big else preset.shift),
            prompt=req.prompt,
            negative_prompt=models.negative_prompt if req.negative_prompt is None else req.negative_prompt,
        )


@dataclass
class Timings:
    """Seconds spent in model compute vs everything else (for the benchmark's overhead share)."""

    compute: float = 0.0
    windows: list[float] = field(default_factory=list)


class WindowLoop:
    """Generates ``job.frames`` frames window by window into ``job.writer``."""

    def __init__(self, components: Components, job: Job, params: SamplingParams, model_id: str) -> None:
        self.c = components
        self.job = job
        self.params = params
        self.model_id = model_id
        self.timings = Timings()
        self.device = components.device
        self.dtype = components.dtype
        self.strength = components.options.color_correction

    # -- setup ---------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """What the frames depend on: the inputs' bytes (not where they came from), settings, model."""
        job = self.job
        request = job.request.model_dump(mode="json", exclude=_NOT_IN_FRAMES | ({"seed"} if job.request.seed is None
                                                                                  else set()))
        inputs = {role: media.sha256 or file_sha256(media.path) for role, media in job.media.items()}
        blob = json.dumps({"request": request, "inputs": inputs, "frames": job.frames,
                           "size": [job.width, job.height], "model": self.model_id, "colour": self.strength,
                           "loras": [str(p) + f"@{s}" for p, s in self.c.options.loras],
                           "sampling": asdict(self.params),  # as resolved: a changed preset does not resume
                           "dtype": str(self.dtype)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _check_parallel_split(self) -> None:
        world = self.c.options.world
        tokens = ((self.job.window_size - 1) // 4 + 1) * (self.job.width // 16) * (self.job.height // 16)
        if world > 1 and tokens % world:
            raise InvalidRequest(
                f"{self.job.width}x{self.job.height} gives {tokens} tokens per window, which do not split evenly "
                f"over {world} GPUs: change width or height by 16 pixels.", field="width")

    def _timed(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings.compute += time.perf_counter() - start

    def run(self) -> dict[str, Any]:
        job, p = self.job, self.params
        self._check_parallel_split()
        plan = self.c.prepare(job.width, job.height)
        self.c.use_adapter(job.mode.speakers)
        self.c.use_lora(p.lora, p.lora_strength, p.preset)
        wins = job.windows
        checkpoint = Checkpoint(f"{checkpoint_root(job.settings)}/{job.id}", self.fingerprint(), job.settings)
        resume = _usable(checkpoint.load(), checkpoint, len(wins))
        if resume is not None and job.request.seed is None:
            job.seed = int(resume.tensors["seed"])
        start_window = 0 if resume is None else resume.windows_done
        per_window = p.steps * len(passes(p.guidance_scale, p.audio_guidance_scale))
        self.c.maybe_compile(per_window * (len(wins) - start_window))
        generator = torch.Generator("cpu").manual_seed(job.seed)
        main_rank = self.c.options.rank == 0  # under torchrun every rank runs the job; one records it
        if main_rank:
            job.on_delivered.append(checkpoint.clear)  # kept until the video is safely delivered
        state: dict[str, Any] = {"motion": None, "stats": None}
        if resume is not None:
            generator.set_state(resume.tensors["rng"])
            state = {"motion": resume.tensors["motion"], "stats": tuple(resume.tensors["stats"])}
            for win in wins[:start_window]:
                frames = checkpoint.frames(win.index)
                if len(frames) != win.new_frames:
                    checkpoint.clear()
                    raise EngineFailed(f"The checkpoint of window {win.index} holds {len(frames)} frames, not "
                                       f"{win.new_frames}; it was removed: retry and the job starts over.")
                job.writer.write(frames)
                job.window_done(win.index, resumed=True)
            job.report("generate", start_window / len(wins), f"resumed after window {start_window}")
        if start_window < len(wins):
            self._generate(wins[start_window:], len(wins), generator, state, checkpoint if main_rank else None)
        lora = None if p.lora is None else f"{p.lora.name}@{p.lora_strength:g}"
        return {"preset": p.preset, "lora": lora, "steps": p.steps, "guidance_scale": p.guidance_scale,
                "audio_guidance_scale": p.audio_guidance_scale,
                "shift": p.shift, "passes_per_step": len(passes(p.guidance_scale, p.audio_guidance_scale)),
                "windows": len(wins), "resumed_from_window": start_window, "compiled": self.c.compiled,
                "seed": job.seed, "memory": plan.describe()}

    def _generate(self, wins: list[Window], count: int, generator: torch.Generator, state: dict[str, Any],
                  checkpoint: Checkpoint | None) -> None:
        """Encode the conditions, then make ``wins`` one by one, each written and checkpointed as it is done."""
        job, p = self.job, self.params
        job.report("generate", wins[0].index / count, "encoding audio")
        features = [self._timed(self.c.encode_audio, track, job.audio.rate, job.fps, job.frames,
                                job.workdir / f"audio-features-{i}.npy")
                    for i, track in enumerate(job.audio.tracks)]
        cond_text = self._timed(self.c.encode_text, p.prompt)
        neg_text = self._timed(self.c.encode_text, p.negative_prompt)
        masks = None
        if job.mode.speakers == 2:  # without boxes: InfiniteTalk's default, the two halves shrunk by 5 %
            w, h = job.visual.width, job.visual.height
            boxes = job.request.speaker_boxes or default_boxes(w, h)
            masks = speaker_masks(boxes, w, h, job.width, job.height)

        def write(window: int, frames: np.ndarray, tensors: dict[str, Any]) -> None:
            job.writer.write(frames)
            job.window_done(window)  # a streaming job's segment is out before the checkpoint moves on
            if checkpoint is not None:
                checkpoint.save(window, frames, tensors)

        source = _Source(job)
        output = OutputWorker(write)
        try:
            for win in wins:
                job.check_cancelled()
                began = time.perf_counter()
                frames = self._window(win, count, source, features, cond_text, neg_text, masks, generator, state)
                output.submit(win.index, frames, {"motion": state["motion"], "stats": list(state["stats"]),
                                                  "rng": generator.get_state(), "seed": job.seed})
                self.timings.windows.append(time.perf_counter() - began)
                job.report("generate", (win.index + 1) / count, f"window {win.index + 1}/{count}")
            output.finish()
        finally:
            output.close()
            source.close()

    # -- one window ----------------------------------------------------------------------------------
    def _window(self, win: Window, count: int, source: _Source, features: list[np.ndarray],
                cond_text: torch.Tensor, neg_text: torch.Tensor, masks: torch.Tensor | None,
                generator: torch.Generator, state: dict[str, Any]) -> np.ndarray:
        c, job, p = self.c, self.job, self.params
        cond_frame = source.frame(win)
        if state["stats"] is None:
            state["stats"] = reference_stats(cond_frame)
        y, clip = source.conditioning(cond_frame, self)
        first = state["motion"] is None
        motion_pixels = cond_frame[:, None] if first else state["motion"]
        motion_latents = self._timed(c.vae_encode, motion_pixels).to(self.device, torch.float32)
        audio = audio_windows(features, win).to(self.device, self.dtype)
        null_audio = torch.zeros_like(audio[-1:])
        shape = (motion_latents.shape[0], y.shape[1], y.shape[2], y.shape[3])
        noise = torch.randn(shape, generator=generator).to(self.device)
        motion_count = motion_latents.shape[1]

        def pin(latent: torch.Tensor) -> torch.Tensor:
            if not first:  # upstream draws (and discards) motion noise here; keep its RNG order
                torch.randn(motion_latents.shape, generator=generator)
            latent = latent.clone()
            latent[:, :motion_count] = motion_latents
            return latent

        transformer = c.transformer
        caching = c.options.cache != "none"  # each CFG pass keeps its own cache state

        def predict(name: str, t: float, latent: torch.Tensor) -> torch.Tensor:
            text = cond_text if name in ("cond", "drop_audio") else neg_text
            sound = audio if name in ("cond", "drop_text") else null_audio
            x = torch.cat([latent, y]).to(self.dtype)[None]
            context = transformer.cache_context(name) if caching else nullcontext()
            with context, torch.no_grad():
                out = transformer(x, torch.tensor([t], device=self.device), text, clip, audio=sound,
                                  speaker_masks=masks if sound.shape[0] == 2 else None, return_dict=False)[0]
            c.passes_run += 1
            return out[0].float()

        def on_step(i: int) -> None:
            job.check_cancelled()  # a window can take minutes: stop between steps, not only between windows
            job.report("generate", (win.index + (i + 1) / p.steps) / count,
                       f"window {win.index + 1}/{count}, step {i + 1}/{p.steps}")

        latent = self._timed(sample, noise, timesteps(p.steps, p.shift), predict, p.guidance_scale,
                             p.audio_guidance_scale, pin, on_step)
        video = self._timed(c.vae_decode, latent)
        video = match_colours(video, state["stats"], self.strength).cpu()
        state["motion"] = video[:, -job.motion_frames:].clone()
        return video_to_uint8(video[:, win.keep()])


def _usable(resume: Resume | None, checkpoint: Checkpoint, windows: int) -> Resume | None:
    """``resume`` when it holds what the loop continues from; otherwise it is discarded."""
    if resume is None:
        return None
    tensors = resume.tensors
    if (resume.windows_done > windows or not isinstance(tensors, dict)
            or not {"rng", "motion", "stats", "seed"} <= set(tensors)):
        checkpoint.discard("does not fit this job")
        return None
    return resume


class _Source:
    """The conditioning frame per window: the image (I2V) or the source video frame at the window's start."""

    def __init__(self, job: Job) -> None:
        from talkgen.media.frames import VideoFrameReader, fit_frame
        from talkgen.media.probe import load_image

        self.job = job
        self.reader = None
        self.image: torch.Tensor | None = None
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None
        if job.mode.is_video:
            self.reader = VideoFrameReader(job.visual_path, job.width, job.height,
                                           job.media[job.mode.visual_role.name].source,
                                           max_pixels=job.settings.max_image_pixels)
        else:
            image = load_image(job.visual_path, job.settings.max_image_pixels)
            self.image = frame_to_tensor(fit_frame(image, job.width, job.height))

    def frame(self, win: Window) -> torch.Tensor:
        if self.reader is None:
            assert self.image is not None
            return self.image
        info = self.reader.info
        index = window_source_frame(win, info.fps or 25.0, info.frames, self.job.fps)
        return frame_to_tensor(self.reader.frame_at(index))

    def conditioning(self, frame: torch.Tensor, loop: WindowLoop) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` (mask + VAE of the frame followed by zeros) and the CLIP features; cached for an image."""
        if self.reader is None and self._cached is not None:
            return self._cached
        c, size = loop.c, self.job.window_size
        video = torch.cat([frame[:, None], torch.zeros(3, size - 1, *frame.shape[1:])], dim=1)
        latents = loop._timed(c.vae_encode, video)
        mask = first_frame_mask(latents.shape[1], latents.shape[2], latents.shape[3], c.vae_scale_temporal)
        y = torch.cat([mask.to(latents), latents]).to(loop.device, loop.dtype)
        clip = loop._timed(c.encode_image, frame).to(loop.device, loop.dtype)
        result = (y, clip)
        if self.reader is None:
            self._cached = result
        return result

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
