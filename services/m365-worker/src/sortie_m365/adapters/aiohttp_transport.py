"""An httpx transport on aiohttp, under msgraph-sdk's httpx client.

kiota (msgraph-sdk's HTTP layer) needs an `httpx.AsyncClient`, and runs its middleware on
it; only the last hop, the transport, is replaced. httpcore's pool looks at every pooled
connection (a poll() of each socket, `has_expired`) on every request and every response:
with the hundred connections a worker keeps at 400 writes/s that was ~15 % of its CPU
(py-spy, bench/m365_offboard.py). aiohttp takes an idle connection of the host in O(1).

Like an httpcore transport, this one returns the body as received (still compressed, if
it was): httpx decodes it. aiohttp's failures become httpx's transport errors, which the
adapters already translate (`sortie_core.http.transport_error`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from yarl import URL


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (connect, read, write, pool) in aiohttp's terms."""
    t: dict[str, Any] = request.extensions.get("timeout") or {}
    return aiohttp.ClientTimeout(
        total=None, connect=t.get("pool"), sock_connect=t.get("connect"), sock_read=t.get("read")
    )


def _error(err: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = str(err) or type(err).__name__
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(err, TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(err, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(err, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled aiohttp session (keep-alive per host), created inside the running loop
    on first use. Redirects are never followed (the client does not either)."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30),
                # httpx decodes, from the headers, as it does after httpcore.
                auto_decompress=False,
                # The request carries every header httpx and kiota set (User-Agent too).
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                # Proxies from the environment are httpx's mounts, in front of this one.
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            async with self._get().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(request),
            ) as answer:
                raw = await answer.read()
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers
                ]
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise _error(err, request) from err
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(raw), request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
