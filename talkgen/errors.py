"""One error hierarchy: every failure a user can cause or see is a `TalkgenError`.

Each error has a stable ``code`` (for programs), a ``message`` that says what to change (for people),
a ``retryable`` flag (for queues), and optionally the request ``field`` it is about.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TalkgenError(Exception):
    """Base error: ``TalkgenError(code, message, retryable=None, field=None)``.

    ``retryable`` defaults to what the code's table row says. Subclasses fix the code and take the
    message first: ``MissingMedia("Set `wav_url`.", field="wav_url")``.
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
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if retryable is None:
            known = ERROR_CODES.get(code)
            retryable = known.default_retryable if known is not None else self.default_retryable
        self.retryable = retryable
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


class _CodedError(TalkgenError):
    """A subclass with a fixed code: constructed from the message alone."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(type(self).code, message, self.default_retryable if retryable is None else retryable,
                         field, details)


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


class InternalError(_CodedError):
    code = "internal_error"
    default_retryable = True


ERROR_CODES: dict[str, type[_CodedError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, MissingMedia, ConflictingMedia, UnsupportedMedia, MediaUnreadable, MediaTooLarge,
        ForbiddenSource, FetchFailed, TooLong, EngineUnavailable, EngineFailed, OutOfMemory, GpuFailed,
        GpuUnavailable, OutputFailed,
        Timeout, Cancelled, InvalidConfig, InternalError,
    )
}
"""Every stable error code and its class; the README's error table is checked against this."""
