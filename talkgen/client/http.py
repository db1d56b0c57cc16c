"""JSON over HTTP to a platform's job API, with retries for what is transient and clear errors otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from talkgen.errors import EngineUnavailable, InvalidConfig, InvalidRequest, OutputFailed, TalkgenError
from talkgen.sources.url import display_url

log = logging.getLogger("talkgen.client")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_DELAY_S = 30.0


class HttpApi:
    """A base URL, headers, and `request` that retries 429/5xx and connection failures with backoff.

    ``platform`` names the service in messages ("RunPod endpoint abc123"); ``auth_hint`` says what to set
    when the service refuses the credentials (HTTP 401/403).
    """

    def __init__(
        self,
        base_url: str,
        *,
        platform: str,
        auth_hint: str,
        headers: dict[str, str] | None = None,
        retries: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.platform = platform
        self.auth_hint = auth_hint
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._http = httpx.Client(headers={"Accept": "application/json", **(headers or {})},
                                  timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
                                  transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, idempotent: bool = True,
                timeout_s: float | None = None) -> httpx.Response:
        """Send one request; return any answer but 401/403 and what stays transient after the retries.

        A request that is not ``idempotent`` (a submit) is retried only when it surely never arrived
        (connection refused, 429/502/503/504), never after a read timeout or a 500, so no job is created
        twice.
        """
        url = f"{self.base_url}{path}"
        shown = display_url(url)
        timeout = None if timeout_s is None else httpx.Timeout(timeout_s, connect=min(self.timeout_s, 10.0))
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                kwargs: dict[str, Any] = {"json": json} if json is not None else {}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                response = self._http.request(method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise self._unreachable(shown, exc) from None
                self._wait(attempt, None, f"{method} {shown}: {type(exc).__name__}")
                continue
            except httpx.TransportError as exc:
                if last or not idempotent:
                    raise self._unreachable(shown, exc) from None
                self._wait(attempt, None, f"{method} {shown}: {type(exc).__name__}")
                continue
            status = response.status_code
            if status in (401, 403):
                raise InvalidConfig(f"The {self.platform} refused the credentials (HTTP {status} from {method} "
                                    f"{shown}): {self.auth_hint}")
            retry = status in RETRY_STATUSES and (idempotent or status != 500)
            if retry and not last:
                self._wait(attempt, response.headers.get("Retry-After"), f"{method} {shown}: HTTP {status}")
                continue
            if status in RETRY_STATUSES:
                raise EngineUnavailable(f"The {self.platform} answered HTTP {status} to {method} {shown}"
                                        f"{' after ' + str(attempt + 1) + ' tries' if attempt else ''}: "
                                        f"{snippet(response)}. Try again later.")
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, shown: str, exc: Exception) -> TalkgenError:
        return EngineUnavailable(f"Cannot reach the {self.platform} at {shown} after {self.retries + 1} "
                                 f"tr{'y' if self.retries == 0 else 'ies'}: {type(exc).__name__}: "
                                 f"{str(exc)[:200] or 'no detail'}. Check the target and the network.")

    def _wait(self, attempt: int, retry_after: str | None, what: str) -> None:
        delay = min(self.backoff_s * 2 ** attempt, MAX_DELAY_S)
        hinted = _retry_after_s(retry_after)
        if hinted is not None:
            delay = min(max(delay, hinted), MAX_DELAY_S)
        log.info("%s; retrying in %.1f s", what, delay)
        self._sleep(delay)


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def snippet(response: httpx.Response, limit: int = 300) -> str:
    """The start of a response body, for a message."""
    text = response.text.strip().replace("\n", " ")
    return (text[:limit] + "…") if len(text) > limit else (text or "empty body")


def json_body(response: httpx.Response, platform: str) -> dict[str, Any]:
    """The response's JSON object, or a clear error when the service answered something else."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise EngineUnavailable(f"The {platform} answered HTTP {response.status_code} with something that is "
                                f"not a JSON object ({snippet(response, 200)}): is the target the right API?")
    return data


def answer(response: httpx.Response, platform: str, doing: str, not_found: str) -> dict[str, Any]:
    """The JSON body of a successful answer, or the `TalkgenError` a failed one stands for.

    A body in the talkgen error shape becomes its own error; a 404 says ``not_found`` (what to check).
    """
    from talkgen.client.status import error_from_dict

    if response.status_code < 400:
        return json_body(response, platform)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error_code"):
        raise error_from_dict(body)
    if response.status_code == 404:
        raise InvalidRequest(f"The {platform} could not {doing} (HTTP 404): {not_found}")
    if response.status_code < 500:
        raise InvalidRequest(f"The {platform} could not {doing} (HTTP {response.status_code}): {snippet(response)}.")
    raise OutputFailed(f"The {platform} could not {doing} (HTTP {response.status_code}): {snippet(response)}.")


def submitted_id(body: dict[str, Any], response: httpx.Response, platform: str) -> str:
    """The job id a platform's submit answer carries; `OutputFailed` when it carries none."""
    from talkgen.errors import OutputFailed

    job_id = body.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise OutputFailed(f"The {platform} accepted the request but returned no job id: {snippet(response)}.")
    return job_id


def quoted_id(job_id: str) -> str:
    """A job id as one URL path segment."""
    if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > 500:
        raise InvalidRequest("A job id must be 1 to 500 characters: copy the one `talkgen submit` printed.",
                             field="job_id")
    return quote(job_id.strip(), safe="")
