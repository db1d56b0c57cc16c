"""``talkgen submit | status | result | cancel``: jobs on a deployed platform, from the command line.

``--to TARGET`` (default ``$TALKGEN_TARGET``) says where: ``runpod:<endpoint_id>``, ``runpod:http://…``,
``modal:https://…modal.run``, ``k8s:<namespace>``. Exit codes as ``talkgen generate``: 0 done, 2 the
request was refused, 1 any other failure (including a job that failed for another reason).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from talkgen.cli_support import load_request, printable, reported_errors
from talkgen.client.client import DEFAULT_POLL_S, Client, connect
from talkgen.client.status import JobStatus
from talkgen.client.target import TARGET_ENV
from talkgen.errors import InvalidRequest

_to = click.option("--to", "target", envvar=TARGET_ENV, metavar="TARGET",
                   help=f"Where the job runs: runpod:<endpoint_id>, runpod:<URL>, modal:<URL>, k8s:<namespace> "
                        f"(default ${TARGET_ENV}).")
_options = click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
                        help="A platform option (repeatable), e.g. -O image=… -O staging=s3://… for k8s.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _client(target: str | None, options: tuple[str, ...]) -> Client:
    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--option {item[:80]!r} is not KEY=VALUE.", field="option")
        parsed[key.strip().replace("-", "_")] = _value(value)
    return connect(target or "", **parsed)


def _value(text: str) -> Any:
    """An option's value: a JSON number, boolean or object when it reads as one, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool, dict, list)) else text


class _Progress:
    """Job state on stderr: a rewritten line on a terminal, one line per change otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, job: JobStatus) -> None:
        if not self.enabled:
            return
        line = _describe(job)
        if self.tty:
            click.echo(f"\r{line[:100]:<100}", err=True, nl=False)
            self.shown = True
        else:
            click.echo(line, err=True)

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)


def _describe(job: JobStatus) -> str:
    text = f"{job.id}: {job.status}"
    if job.progress:
        bar = "#" * ((job.percent or 0) // 4)
        text += f" [{bar:<25}] {job.percent or 0:3d}% {job.progress.get('stage', '')}"
        if job.progress.get("message"):
            text += f": {str(job.progress['message'])[:50]}"
    if job.error and job.done:
        text += f" ({job.error.get('error_code')}: {job.error.get('error')})"
    return printable(text)


def _finish(client: Client, job_id: str, timeout: float | None, output: str | None, as_json: bool,
            poll_s: float) -> None:
    """Wait for the job, then print (and with ``output`` save) its response."""
    progress = _Progress(not as_json)
    try:
        response = client.wait(job_id, timeout=timeout, poll_s=poll_s, on_progress=progress)
    finally:
        progress.done()
    saved = None
    if output:
        from talkgen.settings import load_settings

        saved = client.save(response, output, load_settings().storage_options)
    shown = dict(response)
    if isinstance(shown.get("video"), str):
        shown["video"] = f"<inline data URI, {len(shown['video'])} chars>"
    if as_json:
        click.echo(json.dumps({"id": job_id, "status": "COMPLETED", "output": shown,
                               **({"saved": str(saved)} if saved else {})}))
        return
    where = saved or shown.get("video_url") or shown.get("video_path") or "inline (use -o FILE to save it)"
    click.echo(printable(f"{job_id}: COMPLETED, video {where}: {shown.get('frames')} frames, "
                          f"{shown.get('width')}x{shown.get('height')}, {shown.get('duration')} s, "
                          f"seed {shown.get('seed')}"))


@click.command()
@click.argument("request_file")
@_to
@_options
@click.option("--wait", "wait_", is_flag=True, help="Also wait for the result, showing progress.")
@click.option("--timeout", type=float, help="With --wait: give up waiting after this many seconds.")
@click.option("-o", "--output", help="With --wait: save the video to this local file.")
@click.option("--poll", "poll_s", type=float, default=DEFAULT_POLL_S, show_default=True, help="Seconds between polls.")
@click.option("--no-validate", is_flag=True, help="Send the request without checking it against this talkgen's schema.")
@_json
def submit(request_file: str, target: str | None, options: tuple[str, ...], wait_: bool, timeout: float | None,
           output: str | None, poll_s: float, no_validate: bool, as_json: bool) -> None:
    """Send a request (JSON file, or - for stdin) to a deployed talkgen; print the job id."""
    with reported_errors(as_json):
        request = load_request(request_file)
        with _client(target, options) as client:
            job_id = client.submit(request, validate=not no_validate)
            if not wait_:
                click.echo(json.dumps({"id": job_id, "target": client.target}) if as_json else job_id)
                return
            if not as_json:
                click.echo(f"submitted {job_id} to {client.target}", err=True)
            _finish(client, job_id, timeout, output, as_json, poll_s)


@click.command()
@click.argument("job_id")
@_to
@_options
@_json
def status(job_id: str, target: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Show a job's state and progress."""
    with reported_errors(as_json), _client(target, options) as client:
        job = client.status(job_id)
    if as_json:
        body = job.to_dict()
        if isinstance((body.get("output") or {}).get("video"), str):
            body["output"]["video"] = f"<inline data URI, {len(body['output']['video'])} chars>"
        click.echo(json.dumps(body))
    else:
        click.echo(_describe(job))


@click.command()
@click.argument("job_id")
@_to
@_options
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (the job keeps running).")
@click.option("-o", "--output", help="Save the video to this local file.")
@click.option("--poll", "poll_s", type=float, default=DEFAULT_POLL_S, show_default=True, help="Seconds between polls.")
@_json
def result(job_id: str, target: str | None, options: tuple[str, ...], timeout: float | None, output: str | None,
           poll_s: float, as_json: bool) -> None:
    """Wait for a job and print its response (save the video with -o)."""
    with reported_errors(as_json), _client(target, options) as client:
        _finish(client, job_id, timeout, output, as_json, poll_s)


@click.command()
@click.argument("job_id")
@_to
@_options
@_json
def cancel(job_id: str, target: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Ask the platform to stop a job."""
    with reported_errors(as_json), _client(target, options) as client:
        job = client.cancel(job_id)
    click.echo(json.dumps(job.to_dict()) if as_json else _describe(job))


COMMANDS = (submit, status, result, cancel)
"""What ``talkgen.cli.main`` adds at the top level."""
