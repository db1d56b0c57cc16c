"""The ``talkgen doctor`` click command."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {ok, errors, warnings, checks}.")
@click.option("--verify", is_flag=True, help="Re-hash every model file (slow) instead of comparing sizes.")
@click.option("--engine", help="Check for this engine instead of TALKGEN_ENGINE.")
def doctor(as_json: bool, verify: bool, engine: str | None) -> None:
    """Check that this machine can serve: Python, packages, GPU, models, ComfyUI, storage. Exit 1 on an error."""
    from talkgen.doctor.runner import diagnose

    report = diagnose(verify=verify, overrides={"engine": engine} if engine else None)
    click.echo(report.to_json() if as_json else report.to_text())
    sys.exit(0 if report.ok else 1)
