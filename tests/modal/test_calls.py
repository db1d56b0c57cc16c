"""The job API's Modal adapters: how each outcome of ``FunctionCall.get(timeout=0)`` becomes a `CallState`.

Modal's own FunctionCall needs an account, so a stand-in with the same ``from_id`` / ``get`` / ``cancel``
raises the exceptions Modal raises (the real classes from ``modal.exception``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from talkgen.errors import EngineUnavailable
from talkgen.modal.calls import cancel_call, lookup_call
from talkgen.modal.jobs_api import CallState

modal = pytest.importorskip("modal")
from modal import exception as mx  # noqa: E402


class FakeCall:
    outcome: ClassVar[Any] = None
    cancelled: ClassVar[list[str]] = []

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    @classmethod
    def from_id(cls, call_id: str) -> FakeCall:
        return cls(call_id)

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0  # never waits
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        if isinstance(self.outcome, mx.NotFoundError):
            raise self.outcome
        FakeCall.cancelled.append(self.call_id)


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeCall]:
    monkeypatch.setattr(modal, "FunctionCall", FakeCall)
    FakeCall.cancelled = []
    return FakeCall


def outcome(value: Any) -> CallState:
    FakeCall.outcome = value
    return lookup_call("fc-1")


def test_running_and_done():
    assert outcome(TimeoutError()) == CallState(done=False)
    response = {"video_path": "/outputs/fc-1.mp4"}
    assert outcome(response) == CallState(done=True, output=response)


def test_platform_failures_are_error_dicts():
    timed_out = outcome(mx.FunctionTimeoutError("too slow")).output
    assert timed_out["error_code"] == "timeout" and "TALKGEN_MODAL_TIMEOUT_S" in timed_out["error"]
    expired = outcome(mx.OutputExpiredError()).output
    assert expired["error_code"] == "output_failed" and "expired" in expired["error"]
    assert outcome(mx.InternalFailure("x")).output["error_code"] == "internal_error"
    startup = outcome(EngineUnavailable("Engine 'native' could not start: weights missing.")).output
    assert startup["error_code"] == "engine_unavailable"  # a warm-up failure raised in @modal.enter
    assert outcome(mx.RemoteError("input was cancelled")).cancelled is True
    assert outcome(ValueError("boom")).output["error_code"] == "internal_error"


def test_unknown_ids():
    for error in (mx.NotFoundError("no such call"), mx.InvalidError("bad id")):
        FakeCall.outcome = error
        with pytest.raises(LookupError):
            lookup_call("fc-nope")
    FakeCall.outcome = mx.NotFoundError("no such call")
    with pytest.raises(LookupError):
        cancel_call("fc-nope")
    FakeCall.outcome = None
    cancel_call("fc-2")
    assert FakeCall.cancelled == ["fc-2"]
