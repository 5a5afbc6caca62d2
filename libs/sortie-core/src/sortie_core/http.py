"""Small HTTP facts every adapter needs, and the one translation of HTTP failures into
Sortie's errors (whichever client sent the request: httpx, aiohttp, msgraph-sdk's)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .errors import NotFoundError, PermanentError, SortieError, ThrottledError, TransientError


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` is either seconds or an HTTP date (RFC 9110 §10.2.3); None if absent
    or unreadable, never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _timed_out(err: BaseException) -> bool:
    # asyncio's and aiohttp's timeouts are TimeoutError; httpx's are `*Timeout*` classes
    # (httpx.TimeoutException): matched by name, so this module imports no HTTP client.
    return isinstance(err, TimeoutError) or any(
        "Timeout" in cls.__name__ for cls in type(err).__mro__
    )


def transport_error(err: BaseException, who: str, prefix: str) -> TransientError:
    """A request that got no answer: timed out (`<prefix>_timeout`) or could not reach
    `who` (`<prefix>_unreachable`). Both are worth another attempt. The message names
    the peer and the exception type, never the URL (it can carry tickets)."""
    if _timed_out(err):
        return TransientError(f"{who} timed out", code=f"{prefix}_timeout")
    return TransientError(f"{who} unreachable ({type(err).__name__})", code=f"{prefix}_unreachable")


def status_error(
    status: int,
    headers: Mapping[str, str],
    who: str,
    prefix: str,
    *,
    not_found: bool,
    missing_code: str | None = None,
) -> SortieError:
    """Translate an HTTP error status. `not_found`: whether 404 means "nothing to end";
    `missing_code`: the code of a 404 that means the endpoint itself is missing."""
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledError(
            f"{who} asked to slow down (HTTP {status})",
            code=f"{prefix}_throttled",
            retry_after=retry_after,
        )
    if status >= 500 or status in (408, 425):
        return TransientError(
            f"{who} answered HTTP {status}", code=f"{prefix}_unavailable", retry_after=retry_after
        )
    if status == 404 and not_found:
        return NotFoundError(f"{who} has nothing to end (HTTP 404)")
    if status == 404 and missing_code:
        return PermanentError(
            f"{who} answered HTTP 404: the endpoint is missing (module not deployed or "
            "wrong URL); the SSO session may still be alive",
            code=missing_code,
        )
    if status in (401, 403):
        return PermanentError(
            f"{who} refused Sortie's credentials (HTTP {status})", code=f"{prefix}_unauthorized"
        )
    if 300 <= status < 400:
        return PermanentError(
            f"{who} answered with a redirect (HTTP {status}), not followed",
            code=f"{prefix}_redirected",
        )
    return PermanentError(f"{who} answered HTTP {status}", code=f"{prefix}_rejected")
