"""Target strings: what each names, and what a mistake says."""

from __future__ import annotations

import pytest

from talkgen.client import connect, parse_target
from talkgen.client.command import status
from talkgen.errors import InvalidRequest


@pytest.mark.parametrize(("target", "parsed"), [
    ("runpod:abc123xyz", ("runpod", "abc123xyz")),
    ("runpod:http://127.0.0.1:8000/", ("runpod", "http://127.0.0.1:8000")),
    ("runpod+https://proxy.example/v2/abc", ("runpod", "https://proxy.example/v2/abc")),
    ("modal:https://me--talkgen-api.modal.run", ("modal", "https://me--talkgen-api.modal.run")),
    ("k8s:default", ("k8s", "default")),
    ("kubernetes:team-a", ("k8s", "team-a")),
    ("  RunPod:ep1 ", ("runpod", "ep1")),
])
def test_targets(target: str, parsed: tuple[str, str]) -> None:
    assert parse_target(target) == parsed


@pytest.mark.parametrize(("target", "says"), [
    ("", "Say where to send the job"),
    ("https://api.example/", "does not say which platform: write runpod:<URL>"),
    ("abc123", "does not say which platform"),
    ("runpod:", "is not a RunPod endpoint id"),
    ("runpod:ab/cd", "is not a RunPod endpoint id"),
    ("modal:me--talkgen-api.modal.run", "is not an http(s) URL: write modal:https://"),
    ("modal:https://user:pw@x.modal.run", "plain base URL (no credentials"),
    ("k8s:Team_A", "is not a Kubernetes namespace"),
    ("replicate:model", "Unknown platform 'replicate'"),
])
def test_bad_targets_say_the_fix(target: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_target(target)
    assert caught.value.field == "target"


def test_options_that_do_not_apply_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"modal_key does not apply to target 'runpod:http://x\.example'"):
        connect("runpod:http://x.example", modal_key="k")


def test_command_without_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    monkeypatch.delenv("TALKGEN_TARGET", raising=False)
    out = CliRunner().invoke(status, ["j1"])
    assert out.exit_code == 2 and "--to TARGET or TALKGEN_TARGET" in out.output
    bad = CliRunner().invoke(status, ["j1", "--to", "runpod:http://127.0.0.1:9", "-O", "novalue"])
    assert bad.exit_code == 2 and "is not KEY=VALUE" in bad.output
