"""Sessions of one host of the project's workstations simulator, over HTTP.

`GET /hosts/{host}/sessions` lists them; `POST /hosts/{host}/sessions/{id}/{action}`
answers 204 (404: the session is gone). The machine's own commands (Windows, MultiPoint,
`loginctl`: `system.py`) implement the same `SessionBackend`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.events import SkipReason
from sortie_core.http import transport_error
from sortie_core.steps import StepSkipped

from . import ActsOnSessions, Session, SessionAction, SessionId


def _error(response: httpx.Response, what: str, *, gone_on_404: bool) -> SortieError:
    status = response.status_code
    if status == 404 and gone_on_404:
        return NotFoundError(f"{what}: the session is gone")
    if status == 429:
        retry = response.headers.get("Retry-After", "")
        return ThrottledError(
            f"{what}: throttled",
            code="backend_throttled",
            retry_after=float(retry) if retry.isdigit() else None,
        )
    if status >= 500:
        return TransientError(f"{what}: HTTP {status}", code="backend_unavailable")
    return PermanentError(f"{what}: HTTP {status}", code="backend_rejected")


class SimulatedSessions(ActsOnSessions):
    def __init__(
        self,
        sim_url: str,
        host: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._prefix = f"/hosts/{quote(host, safe='')}/sessions"
        self._client = httpx.AsyncClient(
            base_url=sim_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, what: str) -> httpx.Response:
        try:
            return await self._client.request(method, path)
        except httpx.TransportError as err:
            raise transport_error(err, f"the session backend ({what})", "backend") from err

    async def list_sessions(self) -> list[Session]:
        response = await self._request("GET", self._prefix, "listing sessions")
        if not response.is_success:
            raise _error(response, "listing sessions", gone_on_404=False)
        try:
            rows: Any = response.json()
            return [
                Session(
                    id=int(row["id"]),
                    user=str(row["user"]),
                    state=str(row.get("state", "unknown")),
                    station=None if row.get("station") is None else str(row["station"]),
                )
                for row in rows
            ]
        except (ValueError, KeyError, TypeError) as err:
            raise PermanentError(
                "listing sessions: unreadable answer", code="backend_bad_answer"
            ) from err

    async def _act(self, session_id: SessionId, action: SessionAction) -> None:
        what = f"{action.value} of session {session_id}"
        response = await self._request("POST", f"{self._prefix}/{session_id}/{action.value}", what)
        if not response.is_success:
            raise _error(response, what, gone_on_404=True)

    async def close_browsers(self, account: str) -> str:
        # The simulator runs no browsers: nothing is alive there to close.
        raise StepSkipped(
            "the workstations simulator runs no browsers", SkipReason.DISABLED_BY_CONFIGURATION
        )
