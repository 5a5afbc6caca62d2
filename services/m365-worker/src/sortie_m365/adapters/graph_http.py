"""Microsoft Graph over plain HTTP (httpx), enough for the calls this worker makes.

A later version moves to msgraph-sdk behind the same `M365Directory` protocol. Graph
reference: https://learn.microsoft.com/graph/api/user-revokesigninsessions and
https://learn.microsoft.com/graph/api/user-update ; throttling:
https://learn.microsoft.com/graph/throttling (429/503/504 with `Retry-After` in seconds).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.steps import StepSkipped

# Graph error codes are identifiers such as `Request_ResourceNotFound`; anything else in
# that field is dropped rather than copied into a report.
_GRAPH_CODE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
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


def _graph_code(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        code = body["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "no error code"
    return code if isinstance(code, str) and _GRAPH_CODE_RE.fullmatch(code) else "no error code"


def error_for(response: httpx.Response, what: str) -> SortieError:
    """Translate a Graph error response into Sortie's error tree. Never copies the body's
    free text (it can echo request content) — only Graph's machine error code."""
    status = response.status_code
    code = _graph_code(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return ThrottledError(
            f"Graph throttled {what} ({code})", code="graph_throttled", retry_after=retry_after
        )
    if status in (503, 504):
        cls = ThrottledError if retry_after is not None else TransientError
        return cls(
            f"Graph unavailable for {what}: HTTP {status} ({code})",
            code="graph_unavailable",
            retry_after=retry_after,
        )
    if status >= 500:
        return TransientError(
            f"Graph server error on {what}: HTTP {status} ({code})", code="graph_server_error"
        )
    if status == 404:
        return NotFoundError(f"user not found in Microsoft 365 ({code})")
    if status == 400:
        return PermanentError(f"Graph refused {what} as invalid ({code})", code="graph_bad_request")
    if status == 401:
        return PermanentError(
            f"Graph did not accept Sortie's credentials for {what} ({code})",
            code="graph_unauthorized",
        )
    if status == 403:
        return PermanentError(
            f"Sortie lacks the Graph permission for {what} ({code})", code="graph_forbidden"
        )
    return PermanentError(
        f"Graph answered HTTP {status} to {what} ({code})", code=f"graph_http_{status}"
    )


class GraphHttpDirectory:
    """`M365Directory` speaking Graph's REST shape through one pooled `httpx.AsyncClient`."""

    def __init__(
        self,
        graph_url: str,
        token: SecretStr,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token.get_secret_value():
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=graph_url.rstrip("/") + "/v1.0",
            headers=headers,
            timeout=timeout_s,
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, user: str, suffix: str, what: str, **kw: Any) -> None:
        if not user:
            raise PermanentError("empty user id", code="invalid_user")
        # `@` stays readable; `/`, `#`, `?` and the rest are escaped so a UPN is one segment.
        path = f"/users/{quote(user, safe='@')}{suffix}"
        try:
            response = await self._client.request(method, path, **kw)
        except httpx.TimeoutException as err:
            raise TransientError(f"Graph timed out on {what}", code="graph_timeout") from err
        except httpx.TransportError as err:
            raise TransientError(
                f"Graph unreachable for {what} ({type(err).__name__})", code="graph_unreachable"
            ) from err
        if response.is_success:
            return
        raise error_for(response, what)

    async def revoke_sessions(self, user: str) -> None:
        await self._call("POST", user, "/revokeSignInSessions", "revokeSignInSessions")

    async def block_sign_in(self, user: str) -> None:
        await self._call("PATCH", user, "", "blocking sign-in", json={"accountEnabled": False})

    async def reset_password(self, user: str, password: SecretStr) -> None:
        body = {
            "passwordProfile": {
                "password": password.get_secret_value(),
                "forceChangePasswordNextSignIn": True,
            }
        }
        await self._call("PATCH", user, "", "the password reset", json=body)

    async def disable_mail_protocols(self, user: str) -> None:
        # Graph has no API for it: Exchange Online's admin InvokeCommand (Set-CASMailbox)
        # comes with a later adapter.
        raise StepSkipped("mailbox protocols adapter not configured")
