"""Storage URLs as fsspec takes them, and how their drivers' failures are put in words."""

from __future__ import annotations


def protocol_of(url: str) -> str:
    """The URL's protocol in lower case (``S3://b/k`` → ``s3``); "" without ``://``."""
    head, sep, _ = url.strip().partition("://")
    return head.lower() if sep else ""


def normalised(url: str) -> str:
    """The URL with its protocol in lower case (``S3://b/k`` → ``s3://b/k``), as fsspec registers them."""
    head, _, rest = url.strip().partition("://")
    return f"{head.lower()}://{rest}"


def reason(exc: BaseException) -> str:
    """A driver's exception in a few words (its text can be long or hold a whole response)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:200] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
