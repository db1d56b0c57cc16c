"""A small deterministic engine for tests: the reference frame with bars that follow audio energy.

It is a real plugin: it registers through the `register_engines` hook and is found through the
``talkgen`` entry-point group (tests/support/plugin_site holds its dist-info). Each speaker gets a bar
(speaker 1 on the left, speaker 2 on the right) whose height is the RMS energy of that speaker's
track during the frame, so the frames prove which audio reached the engine and when.
"""

from __future__ import annotations

import numpy as np

from talkgen.hookspecs import hookimpl
from talkgen.plan import window_source_frame

NAME = "test-bars"
BAR_WIDTH = 8


class BarEngine:
    name = NAME
    healthy = True

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.jobs = 0

    def generate(self, job) -> None:  # type: ignore[no-untyped-def]
        from talkgen.media.frames import VideoFrameReader, fit_frame
        from talkgen.media.probe import load_image

        self.jobs += 1
        job.params.update({"steps": 0, "engine_jobs": self.jobs})
        reader = None
        if job.mode.is_video:
            reader = VideoFrameReader(job.visual_path, job.width, job.height)
            reference = None
        else:
            image = load_image(job.visual_path, job.settings.max_image_pixels)
            reference = fit_frame(image, job.width, job.height)
        energy = self._energy(job)
        try:
            wins = job.windows
            for win in wins:
                job.check_cancelled()
                if reader is not None:
                    info = reader.info
                    reference = reader.frame_at(window_source_frame(win, info.fps, info.frames, job.fps))
                frames = np.repeat(reference[None], win.size, axis=0)
                for local in range(win.size):
                    frame_index = min(win.start + local, job.frames - 1)
                    self._draw_bars(frames[local], energy[:, frame_index])
                job.writer.write(frames[win.keep()])
                job.report("generate", (win.index + 1) / len(wins), f"window {win.index + 1}/{len(wins)}")
        finally:
            if reader is not None:
                reader.close()

    @staticmethod
    def _energy(job) -> np.ndarray:  # type: ignore[no-untyped-def]
        """[speakers, frames] RMS of each track per video frame, scaled to 0..1."""
        per_frame = job.audio.rate // job.fps
        rows = []
        for track in job.audio.tracks:
            t = track[: job.frames * per_frame].reshape(job.frames, per_frame)
            rows.append(np.sqrt((t.astype(np.float64) ** 2).mean(axis=1)))
        energy = np.stack(rows)
        return np.clip(energy / 0.2, 0.0, 1.0)

    @staticmethod
    def _draw_bars(frame: np.ndarray, levels: np.ndarray) -> None:
        height, width = frame.shape[:2]
        for speaker, level in enumerate(levels):
            bar = int(round(float(level) * height))
            x0 = 0 if speaker == 0 else width - BAR_WIDTH
            frame[:, x0:x0 + BAR_WIDTH] = 0
            if bar:
                frame[height - bar:, x0:x0 + BAR_WIDTH] = 255

    def close(self) -> None:
        pass


@hookimpl
def register_engines(register) -> None:  # type: ignore[no-untyped-def]
    register(NAME, BarEngine, description="Test engine: reference frame + audio-energy bars (CPU, instant).")
