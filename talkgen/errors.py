"""One error hierarchy: every failure a user can cause or see is a `TalkgenError`.

Each error has a stable ``code`` (for programs), a ``message`` that says what to change (for people),
a ``retryable`` flag (for queues), and optionally the request ``field`` it is about.
"""

from __future__ import annotations

from typing import Any, ClassVar

MESSAGE_LIMIT = 4000
"""The longest message an error keeps: a message never grows with what a caller sent."""
SHOWN_LIMIT = 200
"""How much of a caller's value a message echoes (see `shown`)."""


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``value`` as a message may echo it: quoted, at most about ``limit`` characters, never a payload.

    Strings are cut (``'/very/lo…' (3000000 characters)``); numbers too long to print, containers and
    other objects are described by type and size, so a 3 MB path or a list nested thousands deep costs
    no more than a short one.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 3 * limit:  # about limit digits: cheap to print
            text = str(value)
            return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} digits)"
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, (bytes, bytearray)):
        return f"{type(value).__name__} of {len(value)} bytes"
    try:
        size = len(value)  # type: ignore[arg-type]
    except Exception:  # any object: describing it must not fail
        return type(value).__name__
    return f"{type(value).__name__} of {size} item{'' if size == 1 else 's'}"


def _capped(message: str) -> str:
    """At most `MESSAGE_LIMIT` characters, and valid UTF-8 (lone surrogates from JSON escaped)."""
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + f"… (message cut at {MESSAGE_LIMIT} of {len(message)} characters)"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


class TalkgenError(Exception):
    """Base error: ``TalkgenError(code, message, retryable=None, field=None)``.

    ``retryable`` defaults to what the code's table row says. Subclasses fix the code and take the
    message first: ``MissingMedia("Set `wav_url`.", field="wav_url")``. ``private`` is detail for this
    machine's operator (server paths, …): logs and the local CLI show it, responses to callers never do.
    The message is capped at `MESSAGE_LIMIT` characters.
    """

    code: str = "talkgen_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        private: str | None = None,
    ) -> None:
        message = _capped(str(message))
        super().__init__(message)
        self.code = code
        self.message = message
        if retryable is None:
            known = ERROR_CODES.get(code)
            retryable = known.default_retryable if known is not None else self.default_retryable
        self.retryable = retryable
        self.field = field
        self.details = details or {}
        self.private = None if private is None else _capped(private)

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-able dict (the shape runtimes return; never the ``private`` detail)."""
        out: dict[str, Any] = {"error": self.message, "error_code": self.code, "retryable": self.retryable}
        if self.field:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class _CodedError(TalkgenError):
    """A subclass with a fixed code: constructed from the message alone."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        private: str | None = None,
    ) -> None:
        super().__init__(type(self).code, message, self.default_retryable if retryable is None else retryable,
                         field, details, private)


class InvalidRequest(_CodedError):
    code = "invalid_request"


class MissingMedia(InvalidRequest):
    code = "missing_media"


class ConflictingMedia(InvalidRequest):
    code = "conflicting_media"


class UnsupportedMedia(_CodedError):
    code = "unsupported_media"


class MediaUnreadable(_CodedError):
    code = "media_unreadable"


class MediaTooLarge(_CodedError):
    code = "media_too_large"


class ForbiddenSource(_CodedError):
    code = "forbidden_source"


class FetchFailed(_CodedError):
    code = "fetch_failed"
    default_retryable = True


class TooLong(_CodedError):
    code = "too_long"


class EngineUnavailable(_CodedError):
    code = "engine_unavailable"
    default_retryable = True


class EngineFailed(_CodedError):
    code = "engine_failed"


class OutOfMemory(EngineFailed):
    code = "out_of_memory"


class GpuFailed(EngineFailed):
    """The GPU failed mid-job (Xid, ECC, device-side assert): this process's CUDA context is unusable."""

    code = "gpu_failed"
    default_retryable = True


class GpuUnavailable(EngineUnavailable):
    """A GPU is there but CUDA cannot use it (driver too old for this torch build, no driver)."""

    code = "gpu_unavailable"
    default_retryable = False


class OutputFailed(_CodedError):
    code = "output_failed"
    default_retryable = True


class Timeout(_CodedError):
    code = "timeout"
    default_retryable = True


class Cancelled(_CodedError):
    code = "cancelled"


class InvalidConfig(_CodedError):
    code = "invalid_config"


class JobFailed(_CodedError):
    """A platform reported a job failed with only a message, no talkgen code (`talkgen.client`)."""

    code = "job_failed"


class InternalError(_CodedError):
    code = "internal_error"
    default_retryable = True


ERROR_CODES: dict[str, type[_CodedError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, MissingMedia, ConflictingMedia, UnsupportedMedia, MediaUnreadable, MediaTooLarge,
        ForbiddenSource, FetchFailed, TooLong, EngineUnavailable, EngineFailed, OutOfMemory, GpuFailed,
        GpuUnavailable, OutputFailed,
        Timeout, Cancelled, InvalidConfig, JobFailed, InternalError,
    )
}
"""Every stable error code and its class; the README's error table is checked against this."""
