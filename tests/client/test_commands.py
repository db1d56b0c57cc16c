"""The client commands as the lead wires them: top-level commands of a group."""

from __future__ import annotations

import click
from click.testing import CliRunner

from talkgen.client.command import COMMANDS


def test_commands_join_a_group() -> None:
    group = click.Group("talkgen")
    for command in COMMANDS:
        group.add_command(command)
    runner = CliRunner()
    listing = runner.invoke(group, ["--help"])
    assert listing.exit_code == 0
    for name in ("submit", "status", "result", "cancel"):
        assert name in listing.output
    usage = runner.invoke(group, ["submit", "--help"])
    assert usage.exit_code == 0 and "TALKGEN_TARGET" in usage.output and "--wait" in usage.output


def test_progress_lines_off_a_terminal() -> None:
    from talkgen.client.command import _describe
    from talkgen.client.status import JobStatus

    running = JobStatus("j1", "IN_PROGRESS", progress={"stage": "generate", "percent": 54, "message": "window 1/2"})
    assert _describe(running) == "j1: IN_PROGRESS [#############            ]  54% generate: window 1/2"
    failed = JobStatus("j1", "FAILED", error={"error": "too long", "error_code": "too_long"})
    assert _describe(failed) == "j1: FAILED (too_long: too long)"
