"""The ``url`` source: SSRF-safe http(s) downloads, streamed to disk.

Every hop (the first URL and each redirect) is resolved, refused unless all of its addresses are
public (operators may opt out with ``TALKGEN_ALLOW_PRIVATE_URLS``; link-local and cloud-metadata
addresses need ``TALKGEN_ALLOW_LINK_LOCAL_URLS`` as well), and then connected to by the validated IP, so
DNS rebinding between the check and the connection cannot redirect the request. The Host header and
the TLS name (SNI and certificate check) stay the original host name.

The body is written as received (no content decoding), so the size cap counts the bytes on the wire and
on disk; each input has an overall deadline (``TALKGEN_DOWNLOAD_TIMEOUT_S``) that also bounds the wait
for a server's first byte.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from talkgen.errors import FetchFailed, ForbiddenSource, InvalidRequest
from talkgen.hookspecs import hookimpl
from talkgen.request import MediaRef
from talkgen.settings import Settings
from talkgen.sources.base import FetchContext, check_cancel, too_large, write_capped

SCHEMES = ("http", "https")
REDIRECTS = (301, 302, 303, 307, 308)
BACKOFF_BASE_S, BACKOFF_MAX_S, RETRY_AFTER_MAX_S = 0.5, 8.0, 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Cloud metadata and platform endpoints outside 169.254.0.0/16 and fe80::/10: treated as link-local.
_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack instance metadata
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "168.63.129.16",  # Azure WireServer (a public-looking platform address)
    "192.0.0.192",  # Oracle Cloud Classic metadata
))
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _sleep(seconds: float, cancel: threading.Event) -> None:
    """Wait between retries; returns early when the job is cancelled. Tests replace it."""
    cancel.wait(seconds)


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace it to fake DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv6 one (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    if embedded is None and ip in _NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return embedded


def address_class(address: str | IPAddress) -> str:
    """"public", "private" (loopback, RFC 1918, ULA, CGNAT, reserved …) or "link_local" (169.254.0.0/16,
    fe80::/10 and the cloud metadata addresses); embedded IPv4 forms are unwrapped."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    inner = _embedded(ip) or ip
    if any(a.is_link_local or a in _METADATA for a in (ip, inner)):
        return "link_local"
    return "public" if _is_public(inner) else "private"


def _is_public(ip: IPAddress) -> bool:
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
        or ip.is_unspecified or not ip.is_global or ip in _CGNAT
    )


def is_public_address(address: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses (embedded IPv4 forms are unwrapped)."""
    return address_class(address) == "public"


def _validated_address(host: str, port: int, field: str, settings: Settings) -> str:
    """The address to connect to for ``host``, after refusing destinations the settings do not allow."""
    try:
        addresses = _resolve(host, port)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise _Retry(f"DNS lookup of {host} failed temporarily") from exc
        raise FetchFailed(
            f"`{field}`: cannot resolve the host {host!r} ({exc.strerror}): check the URL.",
            field=field, retryable=False,
        ) from exc
    if not addresses:
        raise FetchFailed(f"`{field}`: {host!r} has no address: check the URL.", field=field, retryable=False)
    for address in addresses:
        kind = address_class(address.split("%")[0])
        what = f"{host} is" if address == host else f"{host} resolves to"
        if kind == "link_local" and not settings.allow_link_local_urls:
            raise ForbiddenSource(
                f"`{field}`: {what} the link-local or cloud-metadata address {address}; URL inputs may not "
                "reach it (TALKGEN_ALLOW_PRIVATE_URLS does not open it). Use a public URL, or an operator "
                "can set TALKGEN_ALLOW_LINK_LOCAL_URLS=true.",
                field=field,
            )
        if kind == "private" and not settings.allow_private_urls:
            raise ForbiddenSource(
                f"`{field}`: {what} the non-public address {address}; URL inputs must be "
                "publicly reachable. Use a public URL, or an operator can set "
                "TALKGEN_ALLOW_PRIVATE_URLS=true for trusted private networks.",
                field=field,
            )
    return addresses[0]


class _Retry(Exception):
    """A failure worth retrying (5xx, 429, connection problems, timeouts)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def display_url(url: str) -> str:
    """``url`` safe to show: no credentials, query string or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # malformed: show only what cannot hold secrets
        return f"{_scheme(url) or 'a'} URL"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}{'?…' if parts.query else ''}"


def _scheme(value: str) -> str:
    match = _SCHEME.match(value.strip())
    return match.group(1).lower() if match else ""


class UrlSource:
    """Downloads ``*_url`` inputs over http(s); public hosts only unless the operator allows private ones."""

    name = "url"
    description = "http(s) URLs: SSRF-checked, redirects re-checked, size-capped, retried on 5xx/429/timeouts"

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify

    def handles(self, ref: MediaRef) -> bool:
        return ref.via == "url" and _scheme(ref.value) in SCHEMES

    def fetch(self, ref: MediaRef, ctx: FetchContext) -> Path:
        ctx = ctx.for_input()
        with ctx.partial_file(ref) as dest:
            self._fetch_with_retries(ref, ctx, dest)
        return dest

    def _fetch_with_retries(self, ref: MediaRef, ctx: FetchContext, dest: Path) -> None:
        settings = ctx.settings
        timeout = httpx.Timeout(
            connect=settings.url_connect_timeout_s, read=settings.url_read_timeout_s,
            write=settings.url_read_timeout_s, pool=settings.url_connect_timeout_s,
        )
        # No keep-alive: a pooled TLS connection, keyed by IP, must never serve another host name.
        limits = httpx.Limits(max_keepalive_connections=0)
        client = httpx.Client(
            trust_env=False, follow_redirects=False, verify=self._verify, timeout=timeout, limits=limits
        )
        with client:
            for attempt in range(settings.url_retries + 1):
                check_cancel(ref, ctx)
                try:
                    self._attempt(client, ref, ctx, dest)
                    return
                except _Retry as exc:
                    check_cancel(ref, ctx)  # a timeout cut short by a deadline reports the deadline
                    if attempt == settings.url_retries:
                        raise FetchFailed(
                            f"`{ref.field}`: {exc.reason} for {display_url(ref.value)} after {attempt} "
                            f"retr{'y' if attempt == 1 else 'ies'}: the server may be down or overloaded; "
                            "try again later or use another URL.",
                            field=ref.field, retryable=True, details={"retries": attempt},
                        ) from exc
                    left = ctx.time_left()
                    delay = _delay(attempt, exc.retry_after)
                    _sleep(delay if left is None else max(0.0, min(delay, left)), ctx.cancel)

    def _attempt(self, client: httpx.Client, ref: MediaRef, ctx: FetchContext, dest: Path) -> None:
        url, seen = ref.value.strip(), set()
        for _hop in range(ctx.settings.url_max_redirects + 1):
            check_cancel(ref, ctx)
            seen.add(url)
            response = _send(client, url, ref, ctx)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    url = urljoin(url, location.strip())
                    if url in seen:
                        raise FetchFailed(
                            f"`{ref.field}`: {display_url(ref.value)} redirects in a loop (back to "
                            f"{display_url(url)}): fix the URL or the server.",
                            field=ref.field, retryable=False,
                        )
                    continue
                _check_status(response, ref, url)
                _stream_body(response, ref, ctx, dest, url)
                return
            finally:
                response.close()
        raise FetchFailed(
            f"`{ref.field}`: {display_url(ref.value)} redirected more than {ctx.settings.url_max_redirects} "
            "times: link straight to the file.",
            field=ref.field, retryable=False,
        )


def _parse_hop(url: str, ref: MediaRef) -> tuple[httpx.URL, str, int]:
    """``url`` parsed, with its bare host name and port; only http(s) URLs with a host pass."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequest(
            f"`{ref.field}`: {display_url(url)} is not a valid URL ({exc}): fix it.", field=ref.field
        ) from exc
    if target.scheme not in SCHEMES:
        raise ForbiddenSource(
            f"`{ref.field}`: {display_url(ref.value)} leads to a {target.scheme}: URL; only http and https "
            "are followed. Link straight to an http(s) file.",
            field=ref.field,
        )
    if not target.raw_host:
        raise InvalidRequest(f"`{ref.field}`: {display_url(url)} has no host: fix the URL.", field=ref.field)
    host = target.raw_host.decode("ascii").strip("[]")
    return target, host, target.port or (443 if target.scheme == "https" else 80)


def _timeouts(ctx: FetchContext) -> httpx.Timeout:
    """The configured timeouts, each cut to the time left before the input's or the job's deadline.

    httpx applies the read timeout to each read, so a body that trickles in can overrun the deadline by
    at most one read timeout (itself cut to what was left when the request was sent).
    """
    settings, left = ctx.settings, ctx.time_left()

    def cut(seconds: float) -> float:
        return seconds if left is None else max(0.01, min(seconds, left))

    read = cut(settings.url_read_timeout_s)
    return httpx.Timeout(connect=cut(settings.url_connect_timeout_s), read=read, write=read,
                         pool=cut(settings.url_connect_timeout_s))


def _send(client: httpx.Client, url: str, ref: MediaRef, ctx: FetchContext) -> httpx.Response:
    """Send a GET for ``url``, connecting to its validated address; transport failures become `_Retry`."""
    target, host, port = _parse_hop(url, ref)
    address = _validated_address(host, port, ref.field, ctx.settings)
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    request = client.build_request(
        "GET", target.copy_with(host=address),
        headers={"Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"},
        extensions=extensions, timeout=_timeouts(ctx),
    )
    try:
        return client.send(request, stream=True)
    except httpx.ConnectError as exc:
        if _caused_by(exc, ssl.SSLCertVerificationError):
            raise FetchFailed(
                f"`{ref.field}`: the TLS certificate of {host} is not valid ({exc}): fix the server's "
                "certificate or use another URL.",
                field=ref.field, retryable=False,
            ) from exc
        raise _Retry(f"cannot connect ({exc})") from exc
    except httpx.TimeoutException as exc:
        raise _Retry(f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _Retry(f"connection failed ({exc})") from exc


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _check_status(response: httpx.Response, ref: MediaRef, url: str) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
    if not 200 <= status < 300:
        raise FetchFailed(
            f"`{ref.field}`: HTTP {status} for {display_url(url)}: check the URL (is the file public, "
            "and does the link still work?).",
            field=ref.field, retryable=False, details={"status": status},
        )


def _check_encoding(response: httpx.Response, ref: MediaRef, url: str) -> None:
    """Refuse a body with a Content-Encoding (gzip, br, deflate, zstd, …): we asked for identity.

    Refused rather than decoded: media files are compressed already, so a compliant server never needs
    it; a decoder's output is not bounded by the bytes received (a 194 KB gzip body inflates to GBs), and
    decoding brotli/zstd would need optional libraries. Not retryable: the server must change.
    """
    encoding = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise FetchFailed(
            f"`{ref.field}`: {display_url(url)} was sent with Content-Encoding: {encoding.strip()[:40]!r} "
            "although talkgen asks for none (Accept-Encoding: identity); compressed transfer encodings are "
            "refused. Serve the file without content encoding (turn off gzip/brotli for media files on the "
            "server), or link to the file where it is served as is.",
            field=ref.field, retryable=False, details={"content_encoding": encoding.strip()[:40]},
        )


def _stream_body(response: httpx.Response, ref: MediaRef, ctx: FetchContext, dest: Path, url: str) -> None:
    """Write the body to ``dest`` as received, enforcing the size cap before and while reading."""
    _check_encoding(response, ref, url)
    limit = ctx.settings.max_download_bytes
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large(ref, limit, int(length))
    try:
        # Raw bytes as they arrive (httpx would decode a Content-Encoding in iter_bytes): the cap counts
        # what is received and written, and cancel and deadlines act promptly.
        write_capped(response.iter_raw(), dest, ref, ctx)
    except httpx.TimeoutException as exc:
        raise _Retry(f"timed out while downloading ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _Retry(f"the download broke off ({exc})") from exc


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff, stretched to the server's Retry-After (which is capped at a few seconds)."""
    backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
    return max(backoff, min(retry_after or 0.0, RETRY_AFTER_MAX_S))


@hookimpl
def register_sources(register: Callable[[object], None]) -> None:
    register(UrlSource())
