"""On Modal itself: needs an account. Skipped unless MODAL_TOKEN_ID (and MODAL_TOKEN_SECRET) are set.

Runs an ephemeral app (``app.run()``: built, used, stopped) on the cheapest GPU, without weights: a bad
request must come back as the talkgen error dict through a real remote call, and through the web job API.
The first run builds the GPU image (torch and the pins: several minutes).
"""

from __future__ import annotations

import os

import pytest

from tests.modal.conftest import load_app

pytestmark = pytest.mark.skipif(
    not os.environ.get("MODAL_TOKEN_ID"),
    reason="needs a Modal account: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (modal token new) to run it",
)


@pytest.fixture
def remote_app(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TALKGEN_MODAL_APP_NAME", "talkgen-test")
    monkeypatch.setenv("TALKGEN_MODAL_GPU", "T4")
    monkeypatch.setenv("TALKGEN_MODAL_TIMEOUT_S", "600")
    monkeypatch.setenv("TALKGEN_MODAL_WEIGHTS_VOLUME", "talkgen-test-models")
    monkeypatch.setenv("TALKGEN_MODAL_OUTPUTS_VOLUME", "talkgen-test-outputs")
    monkeypatch.setenv("TALKGEN_MODAL_PROGRESS_DICT", "talkgen-test-progress")
    monkeypatch.setenv("TALKGEN_MODAL_ENV", '{"TALKGEN_WARMUP": "false"}')  # no weights in the test volume
    return load_app()


def test_bad_request_is_an_error_dict_remotely(remote_app):  # type: ignore[no-untyped-def]
    with remote_app.app.run():
        response = remote_app.TalkGenWorker().generate.remote({"image_path": 5})
    assert response["error_code"] == "invalid_request" and response["retryable"] is False


def test_job_api_refuses_bad_input_remotely(remote_app):  # type: ignore[no-untyped-def]
    import httpx

    with remote_app.app.run():
        url = remote_app.api.get_web_url()
        headers = {"Modal-Key": os.environ.get("MODAL_PROXY_KEY", ""),
                   "Modal-Secret": os.environ.get("MODAL_PROXY_SECRET", "")}
        reply = httpx.post(f"{url}/jobs", json={"image_path": 5}, headers=headers, timeout=120)
    if reply.status_code == 401:
        pytest.skip("the job API needs proxy auth: set MODAL_PROXY_KEY and MODAL_PROXY_SECRET (a proxy auth token)")
    assert reply.status_code == 400 and reply.json()["error_code"] == "invalid_request"
