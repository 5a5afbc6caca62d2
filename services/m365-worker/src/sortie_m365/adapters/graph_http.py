"""msgraph-sdk's HTTP client for Sortie: the SDK's request adapter on an httpx client
whose last hop is aiohttp (aiohttp_transport.py), without kiota's middleware.

Each middleware is left out for a reason: the retry handler, so that `run_step` makes (and
reports) every attempt and honours Graph's `Retry-After` on 429/503/504
(graph_errors.py); the redirect handler, as none of these calls is answered with a
redirect (Graph redirects downloads of content and reports): kiota hands a 3xx that
no handler followed back as a success, so one raises `Redirected` here (a failure,
`graph_http_3xx`); the parameters-name decoding, done once per URL instead
(graph_urls.py); the `/me` URL replacement (never used); the headers and body inspection
handlers (inactive unless a request asks); the user agent handler, whose value is set
once on the client. Together they cost ~a fifth of a call's CPU (py-spy,
bench/m365_logout_cpu.py).
"""

from __future__ import annotations

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_http.middleware.options import UserAgentHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient

from .aiohttp_transport import AiohttpTransport
from .apps import SpreadAuthentication

__all__ = ["Redirected", "graph_client"]


class Redirected(Exception):
    """Graph answered a redirect, which no call of Sortie's expects."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = response.status_code
        self.headers = response.headers


async def _refuse_redirects(response: httpx.Response) -> None:
    if response.is_redirect:
        raise Redirected(response)


def graph_client(
    graph_url: str,
    credential: AsyncTokenCredential | list[AsyncTokenCredential],
    *,
    scope: str,
    timeout_s: float,
    connections: int = 100,
) -> GraphServiceClient:
    """A client without kiota's middleware (the module's docstring says why), pointed at
    `graph_url` (+ `/v1.0`); with several credentials (app registrations), each request goes
    as the one `APP` names. `connections`: open to Graph at most (as many as the calls
    allowed in flight, or calls wait for a connection while the write quota has tokens to
    spend)."""
    http = httpx.AsyncClient(
        timeout=timeout_s,
        follow_redirects=False,
        transport=AiohttpTransport(limit=connections),
        event_hooks={"response": [_refuse_redirects]},
    )
    agent = UserAgentHandlerOption()
    # What kiota's UserAgentHandler makes of httpx's own value.
    http.headers["User-Agent"] = (
        f"{http.headers['User-Agent']} {agent.product_name}/{agent.product_version}"
    )
    credentials = credential if isinstance(credential, list) else [credential]
    auth = SpreadAuthentication(credentials, scope)
    adapter = GraphRequestAdapter(auth, http)
    # Without the trailing slash, or every request goes to `//users`.
    adapter.base_url = graph_url.rstrip("/") + "/v1.0"
    return GraphServiceClient(request_adapter=adapter)
