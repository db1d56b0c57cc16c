"""`ComfyUIEngine`: one ComfyUI prompt per 81-frame window, frames streamed into talkgen's writer.

Per window the engine uploads the window's audio slice (and, after the first window, the previous
window's last 9 frames as ``previous_frames``), queues the filled workflow, follows it, downloads the
window's video and writes the new frames. ComfyUI's memory stays bounded by one window, progress and
cancel work per window, and the response has the same shape as with any engine.
"""

from __future__ import annotations

import logging
import mimetypes
import shutil
import time
import uuid
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from talkgen.engines.comfyui.client import ComfyClient
from talkgen.engines.comfyui.flavours import (
    FLAVOURS,
    INSTALL_HINT,
    REQUIRED_NODES,
    ServerFlavours,
    candidates,
    require_any,
)
from talkgen.engines.comfyui.media import iter_frames, read_frames, write_audio_slice, write_frames, write_mask
from talkgen.engines.comfyui.preflight import check_models
from talkgen.engines.comfyui.run import RunLimits, Step, run_prompt
from talkgen.engines.comfyui.supervisor import Supervisor
from talkgen.engines.comfyui.workflow import Workflow
from talkgen.errors import EngineFailed, EngineUnavailable, InvalidRequest
from talkgen.media.boxes import default_boxes
from talkgen.plan import source_frame_index
from talkgen.settings import Settings

if TYPE_CHECKING:
    from talkgen.job import Job
    from talkgen.plan import Window

log = logging.getLogger(__name__)
NAME = "comfyui"
BUILTIN = Path(str(files("talkgen.workflows")))
"""The built-in graphs, ``<flavour>/<mode>.json``: the repository's top-level ``workflows/`` folder, shipped in the
wheel as the package ``talkgen.workflows`` (``package-dir`` in pyproject.toml)."""
VERSIONS = BUILTIN / "versions.json"
"""ComfyUI and node-pack commits, packages and model files the built-in graphs need (read by the image build)."""
DEFAULT_STEPS = 6  # the lightx2v distill LoRA of the built-in native workflow
DEFAULT_GUIDANCE = 1.0


class ComfyUIEngine:
    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flavour = settings.comfyui_flavour  # "auto": chosen per job from what the server has
        self.client = ComfyClient(settings.comfyui_url)
        self.healthy = True
        self._checked: set[tuple[str, str]] = set()
        self.supervisor = Supervisor(settings, self.client)
        self.supervisor.ensure()
        wanted = FLAVOURS if self.flavour == "auto" else (self.flavour,)
        self.server = ServerFlavours.check(lambda c: bool(self.client.node_info(c)), wanted)
        if self.flavour == "auto":
            require_any(self.server, settings.comfyui_url)
        elif missing := self.server.missing[self.flavour]:
            raise EngineUnavailable(f"ComfyUI at {settings.comfyui_url} lacks nodes {', '.join(missing)}: the "
                                    f"{self.flavour} flavour (TALKGEN_COMFYUI_FLAVOUR) needs "
                                    f"{INSTALL_HINT[self.flavour]}.", retryable=False)

    def flavour_for(self, job: Job) -> tuple[str, Workflow]:
        """The flavour that runs ``job`` and its workflow: the setting, or with ``auto`` the first installed one
        that can play the job and whose model files the server has."""
        mode = job.mode.workflow
        if self.flavour == "auto" and self.settings.comfyui_workflows_dir is not None:
            workflow = self.workflow(mode, "auto")  # your own graphs: their nodes say which flavour they are
            wrapper = any(n.get("class_type") in REQUIRED_NODES["wrapper"] for n in workflow.graph.values())
            flavour = "wrapper" if wrapper else "native"
            self._check_models(flavour, workflow)
            return flavour, workflow
        problems: list[tuple[str, EngineUnavailable]] = []
        for flavour in candidates(self.flavour, self.server, job.mode.speakers, job.audio.audio_type):
            workflow = self.workflow(mode, flavour)
            try:
                self._check_models(flavour, workflow)
                return flavour, workflow
            except EngineUnavailable as exc:
                problems.append((flavour, exc))
        if len(problems) == 1:
            raise problems[0][1]
        raise EngineUnavailable("No workflow flavour this server has nodes for can run this job: " +
                                "; ".join(f"{f}: {exc.message}" for f, exc in problems), retryable=False)

    def _check_models(self, flavour: str, workflow: Workflow) -> None:
        """The model files the workflow's loaders name are on the server (once found, not asked again)."""
        if (flavour, workflow.name) not in self._checked:
            check_models(self.client, workflow.graph, workflow.name)
            self._checked.add((flavour, workflow.name))

    def workflow(self, mode: str, flavour: str | None = None) -> Workflow:
        flavour = flavour or self.flavour
        folder = self.settings.comfyui_workflows_dir or BUILTIN / flavour
        path = Path(folder) / f"{mode}.json"
        if not path.is_file():
            raise EngineUnavailable(f"No {flavour} workflow for {mode} ({path}): this flavour covers "
                                    f"{', '.join(sorted(p.stem for p in Path(folder).glob('*.json')))}.",
                                    retryable=False)
        return Workflow.load(path)

    def generate(self, job: Job) -> None:
        if job.request.preset == "quality":
            raise InvalidRequest("The ComfyUI engine runs the seed's workflows, which sample with the lightx2v "
                                 "distill LoRA (the fast preset): use preset 'fast' (or leave it out), or the "
                                 "native engine (engine: native) for 'quality'.", field="preset")
        job.params["preset"] = "fast"
        flavour, workflow = self.flavour_for(job)
        folder = f"talkgen/{job.id}"
        prompts: list[str] = []
        try:
            if flavour == "wrapper":
                self._whole(job, workflow, folder, prompts)
            else:
                self._windows(job, workflow, folder, prompts)
        finally:
            self._clean(folder, prompts)

    def _windows(self, job: Job, workflow: Workflow, folder: str, prompts: list[str]) -> None:
        source = None
        if job.mode.is_video:
            from talkgen.media.frames import VideoFrameReader

            field = job.media[job.mode.visual_role.name].source
            source = VideoFrameReader(job.visual_path, job.width, job.height, field,
                                      max_pixels=job.settings.max_image_pixels)
        try:
            self._window_loop(job, workflow, folder, prompts, source)
        finally:
            if source is not None:
                source.close()

    def _window_loop(self, job: Job, workflow: Workflow, folder: str, prompts: list[str], source: Any) -> None:
        steps = job.request.steps or DEFAULT_STEPS
        wins = job.windows
        previous: np.ndarray | None = None
        started = time.monotonic()
        for win in wins:
            job.check_cancelled()

            def on_step(step: Step, win=win) -> None:  # type: ignore[no-untyped-def]
                fraction = (win.index + step.value / max(step.max, 1)) / len(wins)
                job.report("generate", fraction, f"window {win.index + 1}/{len(wins)}, step {step.value}/{step.max}")

            outputs = self._run(
                lambda win=win, previous=previous: self._window_graph(job, workflow, folder, win, previous, steps,
                                                                      source),
                self._limits(job, win.size), on_step, prompts)
            frames = self._window_frames(outputs, job, win.index)
            if len(frames) < win.size:
                raise EngineFailed(f"ComfyUI returned {len(frames)} frames for window {win.index + 1}, expected "
                                   f"{win.size}.", retryable=False)
            job.writer.write(frames[win.keep()])
            job.window_done(win.index)
            previous = frames[-job.motion_frames:]
            job.report("generate", (win.index + 1) / len(wins), f"window {win.index + 1}/{len(wins)}")
        job.params.update({"steps": steps, "windows": len(wins), "flavour": "native",
                           "comfyui_s": round(time.monotonic() - started, 3)})

    def _limits(self, job: Job, frames: int) -> RunLimits:
        """Cancel, stall probe, and a deadline that grows with the prompt's audio (capped by the job's)."""
        deadline = (time.monotonic() + self.settings.comfyui_timeout_s
                    + self.settings.comfyui_timeout_per_audio_s * frames / job.fps)
        if job.deadline is not None:
            deadline = min(deadline, job.deadline)
        return RunLimits(job.cancel, deadline, self.settings.comfyui_stall_s)

    def _run(self, build: Callable[[], dict[str, Any]], limits: RunLimits, on_step: Callable[[Step], None],
             prompts: list[str]) -> dict[str, Any]:
        """Upload and fill (``build``), run; if the server died and the supervisor restarted it, once more
        (uploading again: the restarted server's disk may be new)."""
        prompts.append(str(uuid.uuid4()))
        try:
            return run_prompt(self.client, build(), limits, on_step, prompts[-1])
        except EngineFailed as exc:
            if not exc.retryable or self.client.alive() or not self.supervisor.recover():
                raise
            prompts.append(str(uuid.uuid4()))
            return run_prompt(self.client, build(), limits, on_step, prompts[-1])

    def _whole(self, job: Job, workflow: Workflow, folder: str, prompts: list[str]) -> None:
        """Wrapper flavour: one prompt for the whole audio (the wrapper's sampler windows internally)."""
        steps = job.request.steps or (4 if job.mode.is_video else DEFAULT_STEPS)
        started = time.monotonic()

        def on_step(step: Step) -> None:
            job.report("generate", step.value / max(step.max, 1), f"step {step.value}/{step.max}")

        outputs = self._run(lambda: self._whole_graph(job, workflow, folder, steps), self._limits(job, job.frames),
                            on_step, prompts)
        path = self._download_video(outputs, job, "the job")
        written = 0
        ends = [w.new_end for w in job.windows]  # a streaming job cuts its segments there (at the end)
        for batch in iter_frames(path, job.width, job.height):
            batch = batch[: job.frames - written]
            while len(batch):
                boundary = next(e for e in ends if e > written)
                take, batch = batch[: boundary - written], batch[boundary - written:]
                job.writer.write(take)
                written += len(take)
                if written == boundary:
                    job.window_done(ends.index(boundary))
        if written < job.frames:
            raise EngineFailed(f"ComfyUI returned {written} frames, expected {job.frames}.", retryable=False)
        job.params.update({"steps": steps, "flavour": "wrapper",
                           "comfyui_s": round(time.monotonic() - started, 3)})
        if job.stream is not None:  # one prompt per job: nothing to show until ComfyUI has made all of it
            job.params["stream"] = "at end"

    def _whole_graph(self, job: Job, workflow: Workflow, folder: str, steps: int) -> dict[str, Any]:
        req = job.request
        visual = "video" if job.mode.is_video else "image"
        values: dict[str, Any] = {
            visual: self.client.upload(job.visual_path, f"{visual}{_extension(job)}", folder),
            "prompt": req.prompt, "negative_prompt": req.negative_prompt, "size": (job.width, job.height),
            "frames": job.frames, "seed": job.seed, "steps": steps,
            "guidance": DEFAULT_GUIDANCE if req.guidance_scale is None else req.guidance_scale,
            "audio_guidance": req.audio_guidance_scale, "output": f"{folder}/video",
        }
        # The prepared per-speaker tracks already encode para or add (each speaker silent outside its turn),
        # so the wrapper mixes them as overlapping ("para") tracks either way.
        for i, track in enumerate(job.audio.tracks, start=1):
            path = write_audio_slice(track, job.audio.rate, 0.0, job.frames / job.fps, job.workdir / f"speech_{i}.wav")
            values[f"audio_{i}"] = self.client.upload(path, path.name, folder)
        values.update(self._masks(job, folder))
        return _fill(workflow, values, _REQUIRED_WHOLE, req)

    def _window_graph(self, job: Job, workflow: Workflow, folder: str, win: Window, previous: np.ndarray | None,
                      steps: int, source: Any = None) -> dict[str, Any]:
        """Upload the window's inputs (image or source segment, audio, motion frames) and fill the workflow."""
        req = job.request
        if source is None:
            visual = {"image": self.client.upload(job.visual_path, f"image{_extension(job)}", folder)}
        else:  # V2V: the source frames under this window, at 25 fps and the output size
            info = source.info
            segment = np.stack([source.frame_at(source_frame_index(f, info.fps or 25.0, info.frames, job.fps))
                                for f in range(win.start, win.end)])
            path = write_frames(segment, job.workdir / f"source-{win.index}.mp4", job.fps)
            visual = {"video": self.client.upload(path, path.name, folder)}
        values: dict[str, Any] = {
            **visual, **self._window_audio(job, win, folder),
            "prompt": req.prompt, "negative_prompt": req.negative_prompt, "size": (job.width, job.height),
            "frames": win.size, "seed": job.seed,
            "steps": steps, "guidance": DEFAULT_GUIDANCE if req.guidance_scale is None else req.guidance_scale,
            "audio_guidance": req.audio_guidance_scale, "output": f"{folder}/window-{win.index:05d}",
        }
        graph = _fill(workflow, values, _REQUIRED, req)
        if previous is not None:
            motion = write_frames(previous, job.workdir / f"motion-{win.index}.mp4", job.fps)
            _attach_previous_frames(graph, workflow, self.client.upload(motion, motion.name, folder))
        return graph

    def _clean(self, folder: str, prompts: list[str]) -> None:
        """Forget the job's history entries; remove its input/output files when the server is local."""
        for prompt_id in prompts:
            try:
                self.client.free_history(prompt_id)
            except EngineFailed:
                log.warning("could not delete ComfyUI history of %s", prompt_id)
        if self.settings.comfyui_dir is not None:
            for kind in ("input", "output"):
                shutil.rmtree(Path(self.settings.comfyui_dir) / kind / folder, ignore_errors=True)

    def _window_audio(self, job: Job, win: Window, folder: str) -> dict[str, str]:
        """Upload the window's audio. Two speakers in turns: the core node plays speaker 1's clip, then
        speaker 2's, so the window is cut where the turn changes (speaker 1 keeps at least one frame)."""
        fps, rate = job.fps, job.audio.rate
        if job.mode.speakers == 1:
            spans = [(0, win.start, win.size)]
        else:
            boundary = _turn_boundary(job)
            split = min(max(boundary - win.start, 1), win.size)
            spans = [(0, win.start, split), (1, win.start + split, max(win.size - split, 1))]
        uploaded = {}
        for speaker, start, frames in spans:
            path = write_audio_slice(job.audio.tracks[speaker], rate, start / fps, frames / fps,
                                     job.workdir / f"window-{win.index}-speaker-{speaker + 1}.wav")
            uploaded[f"audio_{speaker + 1}"] = self.client.upload(path, path.name, folder)
        return {**uploaded, **self._masks(job, folder)}

    def _masks(self, job: Job, folder: str) -> dict[str, str]:
        """Two speakers: their boxes (InfiniteTalk's default halves when none) as uploaded mask images."""
        if job.mode.speakers != 2:
            return {}
        w, h = job.visual.width, job.visual.height
        uploaded = {}
        for i, box in enumerate(job.request.speaker_boxes or default_boxes(w, h), start=1):
            mask = write_mask(box, w, h, job.width, job.height, job.workdir / f"mask_{i}.png")
            uploaded[f"mask_{i}"] = self.client.upload(mask, mask.name, folder)
        return uploaded

    def _window_frames(self, outputs: dict[str, Any], job: Job, index: int) -> np.ndarray:
        path = self._download_video(outputs, job, f"window {index + 1}")
        return read_frames(path, job.width, job.height)

    def _download_video(self, outputs: dict[str, Any], job: Job, what: str) -> Path:
        files = [f for ui in outputs.values() for f in (ui.get("images", []) + ui.get("gifs", []))
                 if str(f.get("filename", "")).endswith((".mp4", ".webm", ".mkv", ".mov"))]
        if not files:
            raise EngineFailed(f"ComfyUI finished {what} without a video output (SaveVideo or VHS_VideoCombine).",
                               retryable=False)
        return self.client.download(files[0], job.workdir / f"comfyui-{len(list(job.workdir.glob('comfyui-*')))}.mp4")

    def close(self) -> None:
        self.supervisor.stop()
        self.client.close()


_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "video/mp4": ".mp4",
               "video/quicktime": ".mov", "video/webm": ".webm", "video/x-matroska": ".mkv"}


def _extension(job: Job) -> str:
    """The visual input's extension from its sniffed type (ComfyUI's loaders go by file names)."""
    media = job.media[job.mode.visual_role.name]
    return _EXTENSIONS.get(media.mime) or mimetypes.guess_extension(media.mime) or job.visual_path.suffix or ".bin"


def _turn_boundary(job: Job) -> int:
    """The frame where speaker 1's turn ends (``add``): after the last sound on speaker 1's track."""
    loud = np.flatnonzero(np.abs(job.audio.tracks[0]) > 1e-4)
    if not len(loud):
        return 0
    return int(np.ceil((loud[-1] + 1) * job.fps / job.audio.rate))


_REQUIRED = {"audio_1", "output"}
REQUEST_FIELDS = {"negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                  "audio_guidance": "audio_guidance_scale", "steps": "steps", "seed": "seed"}
"""Slots filled from request fields: a value the workflow cannot take is refused, never dropped."""


def _fill(workflow: Workflow, values: dict[str, Any], required: set[str], request: Any) -> dict[str, Any]:
    for slot, field in REQUEST_FIELDS.items():
        if getattr(request, field) is not None and slot not in workflow.slots:
            raise InvalidRequest(f"`{field}` cannot reach {workflow.name} (no node titled talkgen:{slot}): leave it "
                                 "out for this workflow, or use one that has it.", field=field)
    return workflow.fill({k: v for k, v in values.items() if k in workflow.slots or k in required})
_REQUIRED_WHOLE = {"audio_1", "output"}


def _attach_previous_frames(graph: dict[str, Any], workflow: Workflow, uploaded: str) -> None:
    """Feed the previous window's last frames to the InfiniteTalk node as ``previous_frames``."""
    talk = next((i for i, n in graph.items() if n["class_type"] == "WanInfiniteTalkToVideo"), None)
    if talk is None:
        raise EngineUnavailable(f"{workflow.name} has no WanInfiniteTalkToVideo node to continue windows with.",
                                retryable=False)
    load, parts = "talkgen_previous_video", "talkgen_previous_frames"
    graph[load] = {"class_type": "LoadVideo", "inputs": {"file": uploaded}}
    graph[parts] = {"class_type": "GetVideoComponents", "inputs": {"video": [load, 0]}}
    graph[talk]["inputs"]["previous_frames"] = [parts, 0]
