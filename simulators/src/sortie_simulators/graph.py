"""Microsoft Graph simulator: the user operations Sortie calls, shaped like Graph v1.0.

`GET`/`PATCH /v1.0/users/{id}`, `POST /v1.0/users/{id}/revokeSignInSessions` and JSON
batching, `POST /v1.0/$batch` (https://learn.microsoft.com/en-us/graph/json-batching).
`{id}` is an object id or a userPrincipalName, case-insensitive (as Graph: a mail address
that is not the UPN is found with `$filter`, see graph_query.py). This module holds the
simulator itself; its HTTP routes are in graph_http.py.

Lying, for read-back tests (`POST /_sim/drop-writes`): the named writes are answered as
if done (204, or 200 for revoke) and not applied: `accountEnabled`, `passwordProfile`,
`revokeSignInSessions` (the timestamp does not move), `Set-CASMailbox`.

Faults, settable at start and at run time (`POST /_sim/config`): latency on every /v1.0
call, a fraction of operations answered 503, and token buckets over writes (PATCH and
revoke, counted per batch item) per application and per tenant, answering 429 with
`Retry-After` (graph_throttle.py). Inside a batch, the error rate and
the throttle apply to each item, as Graph does; latency and auth apply to the envelope.

Stats: `requests` counts every operation (each call and each batch item), `writes` the
writes that succeeded, `throttled` the 429s and `errors` the injected 503s.

Passwords are kept only as a salted hash and are never logged or returned.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from fastapi import FastAPI

from .common import Clock, retry_after, utc_now
from .demo import DEMO_USERS
from .graph_admin import add_admin_routes
from .graph_exchange import add_exchange_routes
from .graph_http import add_graph_routes
from .graph_leaver import TenantState, needed_permissions, token_roles
from .graph_model import (
    GRAPH_METADATA,
    PATCHABLE,
    GraphUser,
    Reply,
    bad_request,
    check_password_profile,
    graph_error,
    hash_password,
    invalid_value,
    no_property,
    not_found,
    select_properties,
)
from .graph_query import list_users
from .graph_throttle import WriteThrottle


@dataclass
class GraphConfig:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    # Writes/s per application and tenant, and per tenant for all applications (None or 0:
    # no such limit).
    throttle_writes_per_s: float | None = None
    throttle_tenant_writes_per_s: float | None = None


@dataclass
class GraphStats:
    requests: int = 0
    writes: int = 0
    throttled: int = 0
    errors: int = 0
    dropped: int = 0


class GraphSimulator:
    """Users, fault injection and the operations, independent of HTTP."""

    def __init__(
        self,
        config: GraphConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.users: dict[str, GraphUser] = {}
        self._index: dict[str, str] = {}  # lower-cased id, UPN or mail -> object id
        self.stats = GraphStats()
        self.clock = clock
        self.rng = rng or random.Random()
        self.config = GraphConfig()
        self.throttle = WriteThrottle(None, None, clock)
        # Application permissions the app was not granted: calls needing one answer 403.
        self.missing_permissions: frozenset[str] = frozenset()
        # Writes answered as done and not applied (`/_sim/drop-writes`).
        self.dropped_writes: frozenset[str] = frozenset()
        # Licences, groups, methods, devices, mailboxes (graph_leaver.py).
        self.tenant = TenantState()
        self.configure(**vars(config or GraphConfig()))

    def configure(
        self,
        latency_ms: float | None = None,
        error_rate: float | None = None,
        throttle_writes_per_s: float | None = None,
        throttle_tenant_writes_per_s: float | None = None,
        *,
        reset_throttle: bool = False,
        reset_tenant_throttle: bool = False,
    ) -> None:
        """Change the given settings; `reset_throttle` (`reset_tenant_throttle`) applies
        `throttle_writes_per_s` (`throttle_tenant_writes_per_s`) even when it is None
        (turning that limit off). A throttle set anew starts with full buckets."""
        if latency_ms is not None:
            self.config.latency_ms = latency_ms
        if error_rate is not None:
            self.config.error_rate = error_rate
        app_set = throttle_writes_per_s is not None or reset_throttle
        tenant_set = throttle_tenant_writes_per_s is not None or reset_tenant_throttle
        if app_set:
            self.config.throttle_writes_per_s = throttle_writes_per_s or None
        if tenant_set:
            self.config.throttle_tenant_writes_per_s = throttle_tenant_writes_per_s or None
        if app_set or tenant_set:
            self.throttle = WriteThrottle(
                self.config.throttle_writes_per_s,
                self.config.throttle_tenant_writes_per_s,
                self.clock,
            )

    # -- users ----------------------------------------------------------------------------
    def add_user(
        self,
        upn: str,
        *,
        mail: str | None = None,
        object_id: str | None = None,
        user_type: str = "Member",
        display_name: str | None = None,
        account_enabled: bool = True,
        employee_id: str | None = None,
        on_premises_sam_account_name: str | None = None,
        created_at: datetime | None = None,
    ) -> GraphUser:
        """`created_at` (default now) is also when sessions were last valid from and the
        password last changed: a read-back can only be proven against an older value."""
        object_id = object_id or str(uuid.uuid5(uuid.NAMESPACE_DNS, upn.lower()))
        keys = {k.lower() for k in (object_id, upn, mail) if k}
        taken = sorted(k for k in keys if k in self._index)
        if taken:
            raise ValueError(f"already used by another user: {', '.join(taken)}")
        now = created_at or utc_now()
        user = GraphUser(
            id=object_id,
            user_principal_name=upn,
            mail=mail,
            display_name=display_name or upn.split("@", maxsplit=1)[0],
            user_type=user_type,
            account_enabled=account_enabled,
            sign_in_sessions_valid_from=now,
            created_at=now,
            employee_id=employee_id,
            on_premises_sam_account_name=on_premises_sam_account_name,
        )
        self.users[object_id] = user
        for key in keys:
            self._index[key] = object_id
        return user

    def find(self, key: str) -> GraphUser | None:
        """By object id, UPN or mail (the admin API and Exchange's `Identity`)."""
        object_id = self._index.get(key.lower())
        return self.users.get(object_id) if object_id else None

    def by_path(self, key: str) -> GraphUser | None:
        """`/users/{id | userPrincipalName}` as Graph resolves it: not by mail."""
        user = self.find(key)
        lowered = key.lower()
        if user is None or lowered not in (user.id.lower(), user.user_principal_name.lower()):
            return None
        return user

    # -- operations -----------------------------------------------------------------------
    def execute_url(
        self,
        method: str,
        url: str,
        body: Any,
        body_error: str | None = None,
        app: str = "",
        consistency: str | None = None,
    ) -> Reply:
        """Run one operation given a URL relative to /v1.0 (a batch item's `url`)."""
        parts = urlsplit(url)
        path = parts.path
        for prefix in ("/v1.0/", "/beta/", "v1.0/", "beta/"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
                break
        segments = [unquote(s) for s in path.strip("/").split("/")]
        query = dict(parse_qsl(parts.query))
        return self.execute(
            method,
            segments,
            body,
            query=query,
            body_error=body_error,
            app=app,
            consistency=consistency,
        )

    def execute(
        self,
        method: str,
        segments: list[str],
        body: Any,
        *,
        query: dict[str, str] | None = None,
        body_error: str | None = None,
        app: str = "",
        consistency: str | None = None,
    ) -> Reply:
        """Run one operation: error injection, routing, throttling, then the operation.
        `app` is the caller's bearer token: it names the application and tenant whose write
        budgets apply;
        `consistency` its `ConsistencyLevel` header (advanced queries)."""
        self.stats.requests += 1
        if self.config.error_rate > 0 and self.rng.random() < self.config.error_rate:
            self.stats.errors += 1
            return graph_error(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry later.",
                {"Retry-After": "1"},
            )
        method = method.upper()
        if segments == ["users"] and method == "GET":
            return list_users(self.users.values(), query or {}, consistency)
        leaver = self.tenant.route(self, method, segments, body, query or {}, app)
        if leaver is not None:
            return leaver
        if len(segments) < 2 or segments[0] != "users" or len(segments) > 3:
            return bad_request(f"Resource not found for the segment '{segments[0]}'.", "BadRequest")
        key = segments[1]
        if len(segments) == 3 and segments[2] != "revokeSignInSessions":
            return bad_request(f"Resource not found for the segment '{segments[2]}'.", "BadRequest")
        allowed = ("POST",) if len(segments) == 3 else ("GET", "PATCH")
        if method not in allowed:
            return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")
        throttled = self.throttled(app) if method != "GET" else None
        if throttled is not None:
            return throttled
        if body_error is not None and method == "PATCH":
            return bad_request(body_error, "BadRequest")
        denied = self._denied(method, len(segments) == 3, body, app)
        if denied is not None:
            return denied
        user = self.by_path(key)
        if user is None:
            return not_found(key)
        if method == "GET":
            view = user.graph_view() | self.tenant.user_view(user.id)
            return Reply(200, select_properties(view, (query or {}).get("$select")))
        reply = self._patch(user, body) if method == "PATCH" else self._revoke(user)
        if reply.status < 300:
            self.stats.writes += 1
        return reply

    def throttled(self, app: str) -> Reply | None:
        """429 with Retry-After when the app's or the tenant's write budget is spent (one
        write taken otherwise); every write endpoint, the leaver ones included, asks."""
        if not self.throttle.active:
            return None
        wait = self.throttle.take(app)
        if wait is None:
            return None
        self.stats.throttled += 1
        return graph_error(
            429,
            "TooManyRequests",
            "Too many requests. Retry after the time given in Retry-After.",
            {"Retry-After": retry_after(wait)},
        )

    def _denied(self, method: str, revoke: bool, body: Any, app: str = "") -> Reply | None:
        """403 when the app lacks a permission the call needs
        (https://learn.microsoft.com/graph/api/user-update#permissions): one of its
        token's `roles` when the token is a JWT, else one of `missing_permissions`."""
        needed = set(needed_permissions(method, revoke, body))
        roles = token_roles(app)
        missing = needed - roles if roles is not None else needed & self.missing_permissions
        if missing:
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        return None

    def _patch(self, user: GraphUser, body: Any) -> Reply:
        if body is None:
            return bad_request("Empty Payload. JSON content expected.")
        if not isinstance(body, dict):
            return bad_request("The request body must be a JSON object.")
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue  # msgraph-sdk sends "@odata.type": "#microsoft.graph.user"
            if name not in PATCHABLE:
                return no_property(name)
            if name == "accountEnabled":
                if not isinstance(value, bool):
                    return invalid_value(name)
                changes[name] = value
            else:
                problem = check_password_profile(value)
                if problem is not None:
                    return problem
                changes[name] = value
        dropped = self.dropped_writes & changes.keys()
        if dropped:
            self.stats.dropped += 1
            for name in dropped:
                del changes[name]
        if "accountEnabled" in changes:
            user.account_enabled = changes["accountEnabled"]
        profile = changes.get("passwordProfile")
        if profile:
            if "password" in profile:
                user.password_hash = hash_password(profile["password"])
                user.password_changed_at = utc_now()
            if "forceChangePasswordNextSignIn" in profile:
                user.force_change = profile["forceChangePasswordNextSignIn"]
            if "forceChangePasswordNextSignInWithMfa" in profile:
                user.force_change_mfa = profile["forceChangePasswordNextSignInWithMfa"]
        return Reply(204)

    def _revoke(self, user: GraphUser) -> Reply:
        if "revokeSignInSessions" in self.dropped_writes:
            self.stats.dropped += 1
        else:
            user.sign_in_sessions_valid_from = utc_now()
            user.revocation_count += 1
        return Reply(200, {"@odata.context": f"{GRAPH_METADATA}#Edm.Boolean", "value": True})


def load_demo(sim: GraphSimulator) -> None:
    # Created a day ago, like any account that is offboarded: its timestamps are older
    # than the request, so a read-back can tell a revocation from no change.
    created = utc_now() - timedelta(days=1)
    for user in DEMO_USERS:
        sim.add_user(
            user.upn,
            mail=user.mail,
            object_id=user.graph_id,
            display_name=user.display_name,
            employee_id=user.employee_id,
            on_premises_sam_account_name=user.sam_account_name,
            created_at=created,
        )


def create_app(
    *,
    seed_demo: bool = False,
    latency_ms: float = 0.0,
    error_rate: float = 0.0,
    throttle_writes_per_s: float | None = None,
    throttle_tenant_writes_per_s: float | None = None,
    random_seed: int | None = None,
    clock: Clock = time.monotonic,
) -> FastAPI:
    sim = GraphSimulator(
        GraphConfig(latency_ms, error_rate, throttle_writes_per_s, throttle_tenant_writes_per_s),
        clock=clock,
        rng=random.Random(random_seed),
    )
    if seed_demo:
        load_demo(sim)
    app = FastAPI(title="Sortie Microsoft Graph simulator", docs_url="/_sim/docs")
    app.state.sim = sim
    add_admin_routes(app, sim)
    add_exchange_routes(app, sim)

    add_graph_routes(app, sim)
    return app
