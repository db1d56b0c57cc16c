"""The job API's lookup and cancel on Modal function calls (``modal.FunctionCall.from_id``); needs Modal."""

from __future__ import annotations

import logging

from talkgen.errors import OutputFailed, TalkgenError, Timeout
from talkgen.modal.jobs_api import CallState
from talkgen.modal.shapes import internal_error

log = logging.getLogger("talkgen.modal")


def lookup_call(call_id: str) -> CallState:
    """The state of a spawned call, without waiting. LookupError when Modal knows no such call."""
    import modal
    from modal.exception import (
        FunctionTimeoutError,
        InternalFailure,
        InvalidError,
        NotFoundError,
        OutputExpiredError,
    )

    try:
        output = modal.FunctionCall.from_id(call_id).get(timeout=0)
    except (NotFoundError, InvalidError):
        raise LookupError(call_id) from None
    except OutputExpiredError:
        return CallState(done=True, output=OutputFailed(
            "This job's result has expired on Modal (kept for a limited time): send the request again. The video "
            "itself stays in the outputs Volume or your storage.", retryable=True).to_dict())
    except FunctionTimeoutError:
        return CallState(done=True, output=Timeout(
            "The call ran past the app's timeout (TALKGEN_MODAL_TIMEOUT_S): raise it, or send shorter audio; a "
            "rerun with the same job_id continues from its last finished window.", retryable=True).to_dict())
    except TimeoutError:  # the builtin: still queued or running
        return CallState(done=False)
    except InternalFailure:
        log.warning("call %s: Modal internal failure", call_id, exc_info=True)
        return CallState(done=True, output=internal_error("Modal reported an internal failure"))
    except TalkgenError as exc:  # raised in the container's start (warm-up failed)
        return CallState(done=True, output=exc.to_dict())
    except Exception as exc:
        if "cancel" in str(exc).lower() or "terminat" in str(exc).lower():
            return CallState(done=True, cancelled=True)
        log.warning("call %s failed", call_id, exc_info=True)
        return CallState(done=True, output=internal_error(f"the call failed: {type(exc).__name__}"))
    return CallState(done=True, output=output)


def cancel_call(call_id: str) -> None:
    """Cancel a spawned call (its input stops; the container stays for the next call)."""
    import modal
    from modal.exception import InvalidError, NotFoundError

    try:
        modal.FunctionCall.from_id(call_id).cancel()
    except (NotFoundError, InvalidError):
        raise LookupError(call_id) from None
