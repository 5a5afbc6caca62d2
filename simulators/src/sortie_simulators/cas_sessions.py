"""The CAS simulator's state: SSO sessions (TGTs) and the service tickets each issued,
what the REST API and the actuator (cas.py) read and change.

Sessions are indexed by user (lower-cased: Apereo matches the user case-insensitively), so
a request costs the same with 10 or 100,000 of them; `events` keeps the last `MAX_EVENTS`
destroyed sessions. The actuator's view of a TGT has the shape of apereo/cas's
`SingleSignOnSessionsEndpoint` (support/cas-server-support-reports/src/main/java/org/apereo/
cas/web/report/SingleSignOnSessionsEndpoint.java).
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from .common import iso_us, stamp, utc_now

# Apereo ticket ids end with a host suffix; ours says where they come from.
TICKET_SUFFIX = "sortie-cas"
# What Jackson's default typing writes for a CAS service, and Apereo's default TGT policy.
SERVICE_CLASS = "org.apereo.cas.authentication.principal.SimpleWebApplicationServiceImpl"
TGT_POLICY = "TicketGrantingTicketExpirationPolicy"
# How many destroyed sessions `/_sim/events` remembers (the oldest are dropped).
MAX_EVENTS = 10_000


def iso_standard(moment: datetime) -> str:
    """Apereo's `ISOStandardDateFormat`: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass
class Tgt:
    id: str
    username: str
    created_at: datetime
    # service ticket -> service URL, in the order they were issued
    services: dict[str, str] = field(default_factory=dict)

    def sso_view(self) -> dict[str, Any]:
        return {
            "tgt": self.id,
            "service_tickets": [{"service": s, "ticket": t} for t, s in self.services.items()],
        }

    def sim_view(self) -> dict[str, Any]:
        return {
            "tgt": self.id,
            "user": self.username,
            "created_at": iso_us(self.created_at),
            "services": [{"service": s, "ticket": t} for t, s in self.services.items()],
        }

    @cached_property
    def _dates(self) -> tuple[str, str]:
        return iso_us(self.created_at), iso_standard(self.created_at)

    def actuator_view(self, *, direct: bool = False) -> dict[str, Any]:
        """One entry of `activeSsoSessions`, keys in Apereo's order."""
        created, formatted = self._dates
        view: dict[str, Any] = {
            "authenticated_principal": self.username,
            "authentication_date": created,
            "authentication_date_formatted": formatted,
            "creation_date_formatted": formatted,
            "last_used_date_formatted": formatted,
            "number_of_uses": len(self.services),
            "ticket_granting_ticket": self.id,
            "principal_attributes": {},
            "authentication_attributes": {},
            "expiration_policy": {
                "timeToIdle": 7200,
                "timeToLive": 28800,
                "clock": "SystemClock[Z]",
                "name": TGT_POLICY,
            },
            "remember_me": False,
        }
        if not direct:
            view["is_proxied"] = False
        view["authenticated_services"] = {
            ticket: {
                "@class": SERVICE_CLASS,
                "id": url,
                "originalUrl": url,
                "principal": self.username,
                "source": "service",
                "tenant": None,
            }
            for ticket, url in self.services.items()
        }
        return view


@dataclass
class CasFaults:
    # Accept every delete (200, as usual) and destroy nothing.
    keep_sessions_on_delete: bool = False
    # The REST module is not deployed: 404 on every /cas/v1/tickets request.
    tickets_api_missing: bool = False
    # The CAS is down (behind its load balancer): 503 on everything but /_sim.
    down: bool = False


class CasSimulator:
    def __init__(self) -> None:
        self.tgts: dict[str, Tgt] = {}
        # The user, lower-cased (Apereo matches it so) -> that user's TGTs by id.
        self._by_user: dict[str, dict[str, Tgt]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.faults = CasFaults()
        self._serial = itertools.count(1)

    def _ticket_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._serial)}-{secrets.token_urlsafe(24)}-{TICKET_SUFFIX}"

    def create_tgt(self, username: str, tgt_id: str | None = None) -> Tgt:
        tgt = Tgt(tgt_id or self._ticket_id("TGT"), username, utc_now())
        if tgt.id in self.tgts:
            self._unindex(self.tgts[tgt.id])
        self.tgts[tgt.id] = tgt
        self._by_user.setdefault(username.lower(), {})[tgt.id] = tgt
        return tgt

    def _unindex(self, tgt: Tgt) -> None:
        key = tgt.username.lower()
        mine = self._by_user.get(key, {})
        mine.pop(tgt.id, None)
        if not mine:
            self._by_user.pop(key, None)

    def grant(self, tgt: Tgt, service: str, ticket: str | None = None) -> str:
        ticket = ticket or self._ticket_id("ST")
        tgt.services[ticket] = service
        return ticket

    def newest_tgt(self, username: str) -> Tgt | None:
        mine = [t for t in self.tgts.values() if t.username == username]
        return mine[-1] if mine else None

    def sessions_of(self, username: str | None) -> list[Tgt]:
        """Sorted by TGT id; the user matched case-insensitively, as Apereo does."""
        found = self._by_user.get(username.lower(), {}) if username else self.tgts
        return sorted(found.values(), key=lambda t: t.id)

    def delete_tgt(self, tgt_id: str) -> Tgt | None:
        tgt = self.tgts.get(tgt_id)
        if tgt is not None and not self.faults.keep_sessions_on_delete:
            del self.tgts[tgt_id]
            self._unindex(tgt)
            self._event("tgt_deleted", tgt.username, [tgt.id])
        return tgt

    def delete_user_sessions(self, username: str) -> list[str]:
        mine = self.sessions_of(username)
        ids = [t.id for t in mine]
        if not self.faults.keep_sessions_on_delete:
            for tgt in mine:
                del self.tgts[tgt.id]
                self._unindex(tgt)
            self._event("sso_sessions_deleted", username, ids)
        return ids

    def _event(self, what: str, username: str, tgts: list[str]) -> None:
        self.events.append(
            {
                **stamp(),
                "what": what,
                "username": username,
                "tgt": tgts[0] if tgts else None,
                "tgts": tgts,
            }
        )
