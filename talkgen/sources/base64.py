"""The ``base64`` source: decode a ``*_base64`` field (raw base64 or a ``data:`` URI) to disk in chunks."""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from talkgen.errors import InvalidRequest, MediaTooLarge
from talkgen.hookspecs import hookimpl
from talkgen.request import MediaRef
from talkgen.settings import MB
from talkgen.sources.base import FetchContext, check_cancel

SLICE = 4 << 20  # characters of input handled per step (about 3 MB decoded)
WHITESPACE = " \t\r\n"
_BAD_CHAR = re.compile(r"[^A-Za-z0-9+/\-_= \t\r\n]")
_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \t\r\n"
_WS_BYTES = WHITESPACE.encode()
_WS_LIST = [bytes([c]) for c in _WS_BYTES]
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class Base64Source:
    """Decodes base64 inputs: raw base64 or ``data:<mime>[;params];base64,<payload>``.

    Accepted: the standard alphabet (``+/``) or the URL-safe one (``-_``), not both in one payload;
    whitespace and line breaks anywhere (skipped); ``=`` padding, which may be omitted but, when
    present, must be correct and last. The data URI's mime type is ignored: the bytes are sniffed.
    """

    name = "base64"
    description = "base64 or data: URIs, decoded to disk in chunks (size-capped by TALKGEN_MAX_BASE64_MB)"

    def handles(self, ref: MediaRef) -> bool:
        return ref.via == "base64"

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
        ctx = ctx.for_input()
        start = _payload_start(ref)
        _check_size(ref, ctx, start)
        decoder = _Decoder(ref, ctx)
        with ctx.partial_file(ref) as dest:
            ctx.digests.pop(dest, None)
            with open(dest, "wb") as out:
                decoder.run(start, out)
        ctx.digests[dest] = decoder.digest.hexdigest()  # hashed while decoding, as write_capped does
        return dest


def _payload_start(ref: MediaRef) -> int:
    """Index in ``ref.value`` where the base64 text starts (after a data URI header, if any)."""
    value = ref.value
    if value[:5].lower() != "data:":
        return 0
    comma = value.find(",", 0, 1024)
    if comma < 0:
        raise _invalid(ref, "is a data URI without a comma: use data:<mime>;base64,<payload>.")
    params = [p.strip().lower() for p in value[5:comma].split(";")]
    if params[-1] != "base64":
        raise _invalid(
            ref,
            f"is a data URI that is not base64-encoded ({value[:comma + 1][:60]!r}): encode the file as "
            "base64 and send data:<mime>;base64,<payload>.",
        )
    return comma + 1


def _check_size(ref: MediaRef, ctx: FetchContext, start: int) -> None:
    """Refuse an input whose decoded size would exceed the cap, before decoding anything."""
    value, limit = ref.value, ctx.settings.max_base64_bytes
    if (len(value) - start) * 3 // 4 <= limit:  # an upper bound: most inputs need no counting
        return
    chars = len(value) - start - sum(value.count(c, start) for c in WHITESPACE) - value.count("=", start)
    decoded = chars * 3 // 4  # exact for valid input
    if decoded > limit:
        raise MediaTooLarge(
            f"`{ref.field}` decodes to about {decoded / MB:.1f} MB, over the {limit / MB:g} MB base64 limit: "
            "send the file as a URL (e.g. `*_url`) instead, or an operator can raise TALKGEN_MAX_BASE64_MB.",
            field=ref.field,
        )


class _Decoder:
    """Validates and decodes ``ref.value[start:]`` slice by slice, tracking state across slices."""

    def __init__(self, ref: MediaRef, ctx: FetchContext) -> None:
        self.ref, self.ctx = ref, ctx
        self.alphabet: str | None = None  # "standard" | "url-safe", fixed by the first +/ or -_
        self.carry = b""  # fewer than 4 characters left over from the previous slice
        self.data_chars = 0
        self.pad_at: int | None = None  # position of the first "=" (in ref.value)
        self.pads = 0
        self.digest = hashlib.sha256()  # of the decoded bytes written

    def run(self, start: int, out: BinaryIO) -> None:
        value = self.ref.value
        for offset in range(start, len(value), SLICE):
            check_cancel(self.ref, self.ctx)  # cancel, the job's deadline and the input's
            text = value[offset:offset + SLICE]
            self._write(out, self._decode_slice(text, offset))
        self._write(out, self._finish())

    def _write(self, out: BinaryIO, data: bytes) -> None:
        out.write(data)
        self.digest.update(data)

    def _decode_slice(self, text: str, offset: int) -> bytes:
        data = self._checked_bytes(text, offset)
        if any(ws in data for ws in _WS_LIST):
            data = data.translate(None, _WS_BYTES)
        if self.alphabet == "url-safe":
            data = data.translate(_URLSAFE_TO_STANDARD)
        if self.pad_at is not None:
            if data.strip(b"="):
                raise self._at(self.pad_at, "'=' padding before the end of the data")
            self.pads += len(data)
            return b""
        pad = data.find(b"=")
        if pad >= 0:
            self.pad_at = offset + text.index("=")
            if data[pad:].strip(b"="):
                raise self._at(self.pad_at, "'=' padding before the end of the data")
            self.pads += len(data) - pad
            data = data[:pad]
        self.data_chars += len(data)
        if self.carry:
            data = self.carry + data
        usable = len(data) - len(data) % 4
        self.carry = data[usable:]
        return self._a2b(memoryview(data)[:usable])

    def _checked_bytes(self, text: str, offset: int) -> bytes:
        """``text`` as ASCII bytes, after checking its characters and that one alphabet is used."""
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise self._at(offset + exc.start, f"{text[exc.start]!r} is not a base64 character") from None
        if data.translate(None, _ALLOWED):
            bad = _BAD_CHAR.search(text)  # slow, but only to say where
            assert bad is not None
            raise self._at(offset + bad.start(), f"{bad.group()!r} is not a base64 character")
        standard, urlsafe = _first(data, b"+/"), _first(data, b"-_")
        if self.alphabet is None and (standard >= 0 or urlsafe >= 0):
            self.alphabet = "standard" if urlsafe < 0 or 0 <= standard < urlsafe else "url-safe"
        clash = {"standard": urlsafe, "url-safe": standard}.get(self.alphabet or "", -1)
        if clash >= 0:
            raise self._at(
                offset + clash,
                f"{text[clash]!r} mixes the standard (+/) and url-safe (-_) base64 alphabets; use one",
            )
        return data

    def _finish(self) -> bytes:
        if not self.data_chars:
            raise _invalid(self.ref, "is empty: send the file's bytes as base64.")
        rest = len(self.carry)
        if rest == 1 or (self.pads and self.pads != (4 - rest) % 4):  # padding is optional, but exact
            raise _invalid(
                self.ref,
                f"has bad base64 padding ({self.data_chars} characters and {self.pads} '='): the data is "
                "truncated or corrupted; encode the whole file again.",
            )
        return self._a2b(self.carry + b"=" * ((4 - rest) % 4)) if rest else b""

    def _a2b(self, data: bytes | memoryview) -> bytes:
        try:
            return binascii.a2b_base64(data)
        except binascii.Error as exc:
            raise _invalid(self.ref, f"is not valid base64 ({exc}).") from None

    def _at(self, position: int, problem: str) -> InvalidRequest:
        return _invalid(self.ref, f"is not valid base64: at character {position + 1}, {problem}.")


def _first(data: bytes, chars: bytes) -> int:
    """Index of the first of ``chars`` in ``data``, or -1."""
    found = [i for i in (data.find(c) for c in chars) if i >= 0]
    return min(found, default=-1)


def _invalid(ref: MediaRef, problem: str) -> InvalidRequest:
    return InvalidRequest(f"`{ref.field}` {problem}", field=ref.field)


@hookimpl
def register_sources(register: Callable[[object], None]) -> None:
    register(Base64Source())
