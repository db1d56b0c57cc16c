"""``talkgen k8s``: render, validate, submit and follow batch Jobs, and the runner their pods execute."""

from __future__ import annotations

import click

from talkgen.k8s.render_cli import delete, render, render_download, status, submit, validate
from talkgen.k8s.run_cli import run


@click.group()
def k8s() -> None:
    """Kubernetes batch Jobs: one Indexed Job fans a JSONL of requests out over GPUs."""


for _command in (render, render_download, validate, submit, status, delete, run):
    k8s.add_command(_command)
