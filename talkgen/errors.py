"""One error hierarchy: every failure a user can cause or see is a `TalkgenError`.

Each error has a stable ``code`` (for programs), a ``message`` that says what to change (for people),
a ``retryable`` flag (for queues), and optionally the request ``field`` it is about.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TalkgenError(Exception):
    """Base error. Subclasses fix the code and the retryable default."""

    code: ClassVar[str] = "talkgen_error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.retryable = self.default_retryable if retryable is None else retryable
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-able dict (the shape runtimes return)."""
        out: dict[str, Any] = {"error": self.message, "error_code": self.code, "retryable": self.retryable}
        if self.field:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidRequest(TalkgenError):
    code = "invalid_request"


class MissingMedia(InvalidRequest):
    code = "missing_media"


class ConflictingMedia(InvalidRequest):
    code = "conflicting_media"


class UnsupportedMedia(TalkgenError):
    code = "unsupported_media"


class MediaUnreadable(TalkgenError):
    code = "media_unreadable"


class MediaTooLarge(TalkgenError):
    code = "media_too_large"


class ForbiddenSource(TalkgenError):
    code = "forbidden_source"


class FetchFailed(TalkgenError):
    code = "fetch_failed"
    default_retryable = True


class TooLong(TalkgenError):
    code = "too_long"


class EngineUnavailable(TalkgenError):
    code = "engine_unavailable"
    default_retryable = True


class EngineFailed(TalkgenError):
    code = "engine_failed"


class OutOfMemory(EngineFailed):
    code = "out_of_memory"


class OutputFailed(TalkgenError):
    code = "output_failed"
    default_retryable = True


class Timeout(TalkgenError):
    code = "timeout"
    default_retryable = True


class Cancelled(TalkgenError):
    code = "cancelled"


class InvalidConfig(TalkgenError):
    code = "invalid_config"


class InternalError(TalkgenError):
    code = "internal_error"
    default_retryable = True


ERROR_CODES: dict[str, type[TalkgenError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, MissingMedia, ConflictingMedia, UnsupportedMedia, MediaUnreadable, MediaTooLarge,
        ForbiddenSource, FetchFailed, TooLong, EngineUnavailable, EngineFailed, OutOfMemory, OutputFailed,
        Timeout, Cancelled, InvalidConfig, InternalError,
    )
}
"""Every stable error code and its class; the README's error table is checked against this."""
