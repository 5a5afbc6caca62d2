"""Request guards shared by the API and the status page: failed sign-ins are logged and
rate-limited per client, and cross-site form posts are refused.

The limiter is in memory, per replica: a client that fails `limit` times within `window_s`
is answered 429 (with `Retry-After`) until its oldest failure leaves the window, whatever
token it then presents. The client is the peer address, as uvicorn reports it (behind a
trusted proxy, the address the proxy forwarded: see `trusted_proxies`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import Request

from sortie_orchestrator.http.problems import Problem

log = logging.getLogger(__name__)

# Bounds memory under a flood from many addresses: the least recently failed go first.
MAX_CLIENTS = 10_000


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class FailedAuth:
    def __init__(
        self, limit: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        times = self._failures.get(client, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def check(self, request: Request) -> None:
        """Refuse (429) a client with too many recent failures, before looking at its token."""
        client = client_of(request)
        times = self._recent(client)
        if len(times) >= self.limit:
            wait = max(1, math.ceil(self.window_s - (self.clock() - times[0])))
            raise Problem(
                429,
                "too many failed authentications from this client; try again later",
                slug="too-many-failures",
                headers={"Retry-After": str(wait)},
            )

    def failed(self, request: Request, why: str) -> None:
        client = client_of(request)
        times = self._recent(client)
        times.append(self.clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_CLIENTS:
            self._failures.popitem(last=False)
        log.warning(
            "authentication failed on %s %s from %s: %s",
            request.method,
            request.url.path,
            client,
            why,
        )


def limiter(request: Request) -> FailedAuth:
    found: FailedAuth = request.app.state.failed_auth
    return found


def refuse_cross_site(request: Request) -> None:
    """A form post must come from this site's own pages (login CSRF, forced logout):
    `Sec-Fetch-Site` when the browser sends it, else `Origin` when present."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site not in ("same-origin", "none"):
            raise Problem(403, "cross-site request refused", slug="cross-site")
        return
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin != own:
            raise Problem(403, "cross-site request refused", slug="cross-site")
