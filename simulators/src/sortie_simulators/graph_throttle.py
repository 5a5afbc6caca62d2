"""Graph's write throttling, per application and tenant and per tenant for all applications.

Checked against Microsoft's "service-specific throttling limits", identity and access
(https://learn.microsoft.com/graph/throttling-limits): writes are limited to 3,000 per
150 s per application and tenant, and 18,000 per 5 minutes per tenant whatever the
application; the first limit reached answers 429 with `Retry-After`
(https://learn.microsoft.com/graph/throttling). Graph tells the application and the tenant
apart by the access token's claims: `appid` (v1.0 tokens; `azp` in v2.0) and `tid`
(https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference). A token
that is not a JWT (the simulators' fixed tokens) is its own application in the tenant
`default`.

Each limit is a token bucket holding one second's worth, set as a rate (writes/s): the
benches throttle at a few hundred writes/s; Graph's own limits are 20/s per application
and 60/s per tenant.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .common import Clock, TokenBucket

DEFAULT_TENANT = "default"


def app_and_tenant(token: str) -> tuple[str, str]:
    """The application and tenant a bearer token speaks for (its claims are read, not
    verified: the simulator trusts its callers)."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            padded = parts[1] + "=" * (-len(parts[1]) % 4)
            claims: Any = json.loads(base64.urlsafe_b64decode(padded))
        except (binascii.Error, ValueError):
            claims = None
        if isinstance(claims, dict):
            app = claims.get("appid") or claims.get("azp")
            if isinstance(app, str) and app:
                tenant = claims.get("tid")
                return app, tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT
    return token, DEFAULT_TENANT


class WriteThrottle:
    """A write passes when both its application's and its tenant's bucket hold a token;
    nothing is taken from either when one of them is empty (Graph counts the requests it
    serves)."""

    def __init__(self, app_rate: float | None, tenant_rate: float | None, clock: Clock) -> None:
        self.app_rate = app_rate or None
        self.tenant_rate = tenant_rate or None
        self.clock = clock
        self.apps: dict[tuple[str, str], TokenBucket] = {}
        self.tenants: dict[str, TokenBucket] = {}

    @property
    def active(self) -> bool:
        return self.app_rate is not None or self.tenant_rate is not None

    def take(self, token: str) -> float | None:
        """None when the write may go, else the seconds until it could."""
        app, tenant = app_and_tenant(token)
        buckets: list[TokenBucket] = []
        if self.app_rate is not None:
            if (app, tenant) not in self.apps:
                self.apps[app, tenant] = TokenBucket(self.app_rate, self.clock)
            buckets.append(self.apps[app, tenant])
        if self.tenant_rate is not None:
            if tenant not in self.tenants:
                self.tenants[tenant] = TokenBucket(self.tenant_rate, self.clock)
            buckets.append(self.tenants[tenant])
        waits = [w for w in (b.wait() for b in buckets) if w is not None]
        if waits:
            return max(waits)
        for bucket in buckets:
            bucket.take()
        return None
