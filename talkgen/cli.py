"""The ``talkgen`` command: generate, validate, plugins, models, doctor, k8s, submit/status/result/cancel.

Exit codes: 0 success, 2 bad input (the request or its media), 1 any other failure.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import click

from talkgen.cli_support import INPUT_ERROR_CODES, fail, load_request, printable, reported_errors
from talkgen.errors import InvalidRequest

# The names this module had before `talkgen.cli_support` (plugins and tests import them from here).
_fail, _load_request, _printable, _reported_errors = fail, load_request, printable, reported_errors
__all__ = ["INPUT_ERROR_CODES", "main"]

_FLAG_FIELDS = {  # CLI flag -> (path field, url field, base64 field)
    "image": ("image_path", "image_url", "image_base64"),
    "video": ("video_path", "video_url", "video_base64"),
    "audio": ("wav_path", "wav_url", "wav_base64"),
    "audio2": ("wav_path_2", "wav_url_2", "wav_base64_2"),
}


def _media_field(flag: str, value: str) -> tuple[str, str]:
    path_field, url_field, b64_field = _FLAG_FIELDS[flag]
    if value.startswith("data:"):
        return b64_field, value
    if "://" in value:
        return url_field, value
    return path_field, _local(value, f"--{flag}", path_field)


def _local(value: str, flag: str, field: str) -> str:
    """A path the user typed, absolute; a NUL byte (which no path may hold) is their mistake, said so."""
    if "\x00" in value:
        raise InvalidRequest(f"{flag} contains a NUL character, which no path may hold: remove it.", field=field)
    return str(Path(value).expanduser().resolve())


class _NoTraceback(logging.Formatter):
    """One line per record: the traceback a `log.exception` carries is left out."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _setup_logging() -> None:
    """Warnings to stderr, one line each; tracebacks and info only with TALKGEN_DEBUG.

    Without a handler, Python's last-resort handler prints every logged warning *with* its traceback
    (an engine failure logged by the service printed one though the error itself was reported cleanly).
    """
    root = logging.getLogger()
    if any(getattr(h, "talkgen_cli", False) for h in root.handlers):
        return
    debug = bool(os.environ.get("TALKGEN_DEBUG"))
    handler = logging.StreamHandler()
    handler.talkgen_cli = True  # type: ignore[attr-defined]
    handler.setLevel(logging.INFO if debug else logging.WARNING)
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if debug else _NoTraceback(fmt))
    root.addHandler(handler)
    if debug:
        logging.getLogger("talkgen").setLevel(logging.INFO)


def _json_flag(flag: str, value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{flag} must be JSON: {exc.msg}.") from None
    except RecursionError:
        raise InvalidRequest(f"{flag} is nested too deeply.") from None


def _trusted_settings(request: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Settings for a local user: the directories of the files they named may be read.

    Call it with a request that passed `TalkRequest.parse` (its paths hold no NUL and are not over-long).
    """
    from talkgen.settings import load_settings

    settings = load_settings()
    extra = [Path(v).expanduser().resolve().parent for k, v in request.items()
             if k.startswith(("image_path", "video_path", "wav_path")) and isinstance(v, str) and v]
    return settings.model_copy(update={"allowed_path_roots": [*settings.allowed_path_roots, *extra]})


class _Progress:
    """A progress bar on a terminal (stage, window i/N, elapsed, ETA, the stream's playlist); silent otherwise.

    The playlist path is printed (to stderr) at the first segment, terminal or not."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.playlist: str | None = None
        self._bar: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def _started(self) -> Any:
        if self._bar is None:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
            except ImportError:  # without rich: the one-line display
                self._bar = False
                return None
            self._bar = Progress(
                TextColumn("{task.fields[stage]:<8}"), BarColumn(bar_width=30), TaskProgressColumn(),
                TextColumn("{task.fields[window]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                TextColumn("{task.fields[playlist]}", style="cyan"),
                console=Console(stderr=True), transient=False, refresh_per_second=4)
            self._task = self._bar.add_task("talkgen", total=100, stage="", window="", eta="", playlist="")
            self._bar.start()
        return self._bar or None

    def __call__(self, event) -> None:  # type: ignore[no-untyped-def]
        if not self.enabled:
            return
        with self._lock:
            bar = self._started()
            if bar is None:
                line = "#" * (event.percent // 4)
                click.echo(f"\r[{line:<25}] {event.percent:3d}% {event.stage}: {event.message[:50]:<50}", err=True,
                           nl=False)
                return
            window = re.search(r"window (\d+/\d+)", event.message)
            fields: dict[str, Any] = {"stage": event.stage, "eta": "" if event.eta_s is None else
                                      f"ETA {_clock(event.eta_s)}"}
            if window:
                fields["window"] = f"window {window.group(1)}"
            bar.update(self._task, completed=event.percent, **fields)

    def on_event(self, event: dict[str, Any]) -> None:
        """Job events (`TalkGen.generate`'s ``on_event``): the first segment makes the playlist known."""
        if event.get("event") != "segment" or self.playlist is not None:
            return
        with self._lock:
            self.playlist = str(event["playlist"])
            if self._bar:
                self._bar.update(self._task, playlist=self.playlist)
                self._bar.console.print(f"streaming: {self.playlist}")
            else:
                click.echo(("\n" if self.enabled else "") + f"streaming: {self.playlist}", err=True)

    def done(self) -> None:
        with self._lock:
            if self._bar:
                self._bar.stop()
            elif self.enabled:
                click.echo("", err=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@click.group()
@click.version_option(package_name="talkgen")
def main() -> None:
    """talkgen: portrait + speech → lip-synced talking video (InfiniteTalk)."""
    _setup_logging()


@main.command()
@click.option("--request", "request_file", help="Request JSON file (or - for stdin); flags override it.")
@click.option("--image", help="Portrait image: path, URL, storage URL or data: URI (I2V).")
@click.option("--video", help="Source video: path, URL, storage URL or data: URI (V2V).")
@click.option("--audio", help="Speech of speaker 1: path, URL, storage URL or data: URI.")
@click.option("--audio2", help="Speech of speaker 2 (two-speaker mode).")
@click.option("--audio-type", type=click.Choice(["para", "add"]), help="Two speakers: simultaneous or in turns.")
@click.option("--prompt")
@click.option("--negative-prompt")
@click.option("--width", type=int)
@click.option("--height", type=int)
@click.option("--resolution", type=click.Choice(["480p", "720p"]))
@click.option("--seed", type=int)
@click.option("--steps", type=int)
@click.option("--guidance-scale", type=float)
@click.option("--audio-guidance-scale", type=float)
@click.option("--shift", type=float)
@click.option("--max-duration", type=float, help="Cut the video at this many seconds.")
@click.option("--max-frame", type=int, help="Cut the video at this many frames (25 fps).")
@click.option("--speaker-boxes", help='Two speakers\' boxes as JSON: "[[x0,y0,x1,y1],[x0,y0,x1,y1]]".')
@click.option("--force-offload/--no-force-offload", default=None, help="Offload model parts between uses.")
@click.option("--separate-vocals/--no-separate-vocals", default=None,
              help="Separate the speech from music and noise before lip-sync (default: on).")
@click.option("--network-volume", is_flag=True, default=None, help="Write to the network volume.")
@click.option("--engine", help="Engine name (see `talkgen plugins`).")
@click.option("--job-id")
@click.option("-o", "--output", help="Where to write the mp4: a local path or a storage URL.")
@click.option("--stream-dir", help="Also write a live HLS stream (playlist.m3u8 + one segment per window) into "
              "this folder (or storage URL) while the job runs; its playlist path is printed at the first segment.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate(request_file: str | None, output: str | None, stream_dir: str | None, as_json: bool,
             **flags: Any) -> None:
    """Generate a talking video."""
    with reported_errors(as_json):
        request = load_request(request_file)
        for flag in _FLAG_FIELDS:
            value = flags.pop(flag)
            if value:
                key, val = _media_field(flag, value)
                request[key] = val
        if request.get("video_path") or request.get("video_url") or \
                request.get("video_base64"):
            request.setdefault("input_type", "video")
        if any(request.get(k) for k in _FLAG_FIELDS["audio2"]):
            request.setdefault("person_count", "multi")
        if flags.get("speaker_boxes"):
            flags["speaker_boxes"] = _json_flag("--speaker-boxes", flags["speaker_boxes"])
        request.update({k: v for k, v in flags.items() if v is not None})
        from talkgen.request import TalkRequest
        from talkgen.service import TalkGen
        from talkgen.shutdown import cancel_on_signals

        TalkRequest.parse(request)  # before its paths are resolved for the settings
        service = TalkGen(_trusted_settings(request))
        req = service.validate(request)
        if output is None and not (req.output_url or req.network_volume):
            output = str(Path.cwd() / f"talkgen-{req.job_id or 'output'}.mp4")
        if output is not None and "://" not in output:
            output = _local(output, "-o", "output")
        if stream_dir is not None and "://" not in stream_dir:
            stream_dir = _local(stream_dir, "--stream-dir", "stream")
        if _secondary_rank():  # torchrun: every rank renders, rank 0 alone delivers and reports
            return _run_secondary(service, req)
        progress = _Progress(sys.stderr.isatty() and not as_json)
        cancel_on_signals(service)  # SIGTERM: stop at the next step, clean up, keep the checkpoint
        try:
            result = service.generate(req, output=output, progress=progress, on_event=progress.on_event,
                                      stream_dir=stream_dir)
        finally:
            progress.done()
    response = result.to_response()
    if response.get("video"):
        response["video"] = f"<inline data URI, {len(response['video'])} chars>"
    if as_json:
        click.echo(json.dumps(response))
    else:
        where = result.video_path or result.video_url or "inline"
        click.echo(f"wrote {where}: {result.frames} frames, {result.width}x{result.height}, "
                   f"{result.duration:.2f} s, seed {result.seed}")
        if result.playlist:
            click.echo(f"stream: {result.playlist} ({result.segments} segments)")
        click.echo("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))


@main.command()
@click.argument("request_file")
@click.option("--json", "as_json", is_flag=True)
def validate(request_file: str, as_json: bool) -> None:
    """Check a request file (fetches nothing)."""
    with reported_errors(as_json):
        from talkgen.request import TalkRequest
        from talkgen.service import TalkGen

        request = load_request(request_file)
        TalkRequest.parse(request)  # before its paths are resolved for the settings
        req = TalkGen(_trusted_settings(request)).validate(request)
    refs = {role: ref.field for role, ref in req.media_refs().items()}
    size = "from the input's aspect" if req.resolution else "x".join(map(str, req.output_size()))
    summary = {"valid": True, "mode": req.mode.value, "media": refs, "size": size,
               "audio_type": req.resolved_audio_type}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"valid: mode {req.mode.value}, media {refs}, size {size}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json: bool) -> None:
    """List registered sources, engines, runtimes and sinks, and where they come from."""
    from talkgen.plugins import get_registry

    rows = [{"kind": r.kind, "name": r.name, "plugin": r.plugin, "distribution": r.distribution,
             "description": r.description} for r in get_registry().all()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['kind']:<8} {row['name']:<12} {row['distribution']:<28} {row['description']}")


def _secondary_rank() -> bool:
    """True in a ``torchrun`` process other than rank 0 (multi-GPU context parallelism)."""
    return int(os.environ.get("RANK", "0")) > 0


def _run_secondary(service, req) -> None:  # type: ignore[no-untyped-def]
    """Take part in the job's model passes; keep its video out of rank 0's way and print nothing."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="talkgen-rank-") as tmp:
        service.generate(req.model_copy(update={"output_url": None, "network_volume": False, "stream": False}),
                         output=str(Path(tmp) / "video.mp4"))


def _add_subcommands() -> None:
    from talkgen.cli_models import models
    from talkgen.client.command import cancel, result, status, submit
    from talkgen.doctor.command import doctor
    from talkgen.k8s.command import k8s

    for command in (models, doctor, k8s, submit, status, result, cancel):
        main.add_command(command)


_add_subcommands()

if __name__ == "__main__":
    main()
