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


def test_submit_reads_stdin_and_result_times_out() -> None:
    import json

    from tests.client.stub_server import StubServer

    with StubServer() as stub:
        stub.on("POST", "/run", (200, {"id": "j7", "status": "IN_QUEUE"}))
        stub.on("GET", "/status/j7", (200, {"id": "j7", "status": "IN_QUEUE"}))
        runner = CliRunner()
        request = {"image_url": "https://x.example/a.png", "wav_url": "https://x.example/a.wav"}
        from talkgen.client.command import result, submit

        out = runner.invoke(submit, ["-", "--to", f"runpod:{stub.url}"], input=json.dumps({"input": request}))
        assert out.exit_code == 0 and out.output.strip() == "j7", out.output
        assert stub.calls[0][3] == {"input": request}
        late = runner.invoke(result, ["j7", "--to", f"runpod:{stub.url}", "--timeout", "0.2", "--poll", "0.05",
                                      "--json"])
    assert late.exit_code == 1
    assert json.loads(late.output)["error_code"] == "timeout" and "it keeps running" in late.output
