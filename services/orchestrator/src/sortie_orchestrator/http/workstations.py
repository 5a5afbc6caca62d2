"""The administrator's station view and actions (MultiPoint dashboard's, over HTTP):
list the hosts and their sessions; end or suspend one session, one user's sessions, or
every session of a host or of a named group of hosts (a classroom). Each action is a
request like any other (`GET /v1/requests/{id}` shows its steps and timings)."""

from __future__ import annotations

import bisect
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from sortie_core.events import Subject
from sortie_core.presence import PresenceRecord
from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.bodies import Strict, Visible, fingerprint
from sortie_orchestrator.http.depends import Order, OrderDep, accepts, get_deps
from sortie_orchestrator.http.intake import mark_accepted
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.views import Links
from sortie_orchestrator.saga import AdminOrder, HostPresence

router = APIRouter(prefix="/v1/workstations", tags=["workstations"])

SCOPE = "workstations:admin"
Admin = Annotated[Principal, Depends(require(SCOPE))]
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]
GroupName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Account = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"), Visible
]
SessionRef = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")]


class SessionView(BaseModel):
    id: str
    user: str
    state: str
    station: str | None


class HostView(BaseModel):
    host: str
    group: str | None
    version: str | None
    live: bool
    heartbeat_at: datetime | None
    users: list[str]
    sessions: list[SessionView]

    @classmethod
    def of(cls, host: str, record: PresenceRecord | None, now: float) -> HostView:
        if record is None:
            return cls(
                host=host,
                group=None,
                version=None,
                live=False,
                heartbeat_at=None,
                users=[],
                sessions=[],
            )
        return cls(
            host=host,
            group=record.group,
            version=record.version,
            live=record.is_live(now),
            heartbeat_at=datetime.fromtimestamp(record.heartbeat_at, UTC),
            users=sorted(record.users),
            sessions=[
                SessionView(id=s.id, user=s.user, state=s.state, station=s.station)
                for s in record.sessions
            ],
        )


class HostList(BaseModel):
    items: list[HostView]
    # Live hosts among `items`.
    online: int
    # Hosts matching the query, over every page.
    total: int
    # Pass as `after` for the next page; null on the last one.
    next_cursor: str | None = None


class Target(Strict):
    """Where: one `host` or a `group`; whose: one `session_id` (with a host), one
    `user`'s sessions, or, with neither, every session there."""

    host: HostName | None = None
    group: GroupName | None = None
    user: Account | None = None
    session_id: SessionRef | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200), Visible] = "administrator"

    @model_validator(mode="after")
    def _one_place(self) -> Target:
        if (self.host is None) == (self.group is None):
            raise ValueError("give exactly one of `host` and `group`")
        if self.session_id is not None and (self.host is None or self.user is not None):
            raise ValueError("`session_id` goes with a `host` and without a `user`")
        return self


class Ordered(BaseModel):
    request_id: uuid.UUID
    status: str
    hosts: list[str]
    links: Links


@router.get("", response_model=HostList, summary="Hosts and the sessions open on each")
async def list_workstations(
    request: Request,
    principal: Admin,
    deps: Annotated[handlers.Deps, Depends(get_deps)],
    group: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    after: Annotated[str | None, Query(max_length=63, description="host name cursor")] = None,
) -> HostList:
    now = time.time()
    names = await deps.presence.host_names(group)
    start = bisect.bisect_right(names, after.lower()) if after else 0
    page = names[start : start + limit]
    records = await deps.presence.records(hosts=page)
    sites = request.app.state.settings.station_sites
    items = [
        HostView.of(host, record, now)
        for host, record in records
        if principal.sees_site(station_site(sites, host, record.group if record else None))
    ]
    more = start + limit < len(names)
    return HostList(
        items=items,
        online=sum(1 for i in items if i.live),
        total=len(names),
        next_cursor=page[-1] if more and page else None,
    )


async def _hosts(deps: handlers.Deps, target: Target) -> tuple[list[HostPresence], str | None]:
    """The hosts an order goes to, and the user owning `session_id` if the record says."""
    now = time.time()
    if target.host is not None:
        host = target.host.lower()
        if not await deps.presence.known(host):
            raise Problem(404, f"no agent has reported host {host!r}", slug="unknown-host")
        record = await deps.presence.record(host)
        owner = None
        if record is not None and target.session_id is not None:
            owner = next((s.user for s in record.sessions if s.id == target.session_id), None)
        live = record is not None and record.is_live(now)
        return [HostPresence(host=host, live=live)], owner
    members = await deps.presence.records(target.group)
    if not members:
        raise Problem(404, f"no host in group {target.group!r}", slug="unknown-group")
    if target.user is not None:
        account = target.user.lower()
        members = [(h, r) for h, r in members if r is not None and account in r.users]
        if not members:
            raise Problem(
                409,
                f"{target.user!r} has no session in group {target.group!r}",
                slug="no-session",
            )
    hosts = [HostPresence(host=h, live=r is not None and r.is_live(now)) for h, r in members]
    return hosts, None


def _subject(target: Target, owner: str | None) -> Subject:
    if target.user is not None:
        return Subject(user_id=target.user, windows_account=target.user)
    if target.session_id is not None:
        who = owner.rsplit("\\", 1)[-1].lower() if owner else f"session:{target.session_id}"
        return Subject(user_id=who, windows_account=who)
    # Every session of a host or a group: the request is listed under that name.
    return Subject(user_id=f"host:{target.host}" if target.host else f"group:{target.group}")


def station_site(sites: dict[str, str], host: str, group: str | None) -> str | None:
    """The site of a station: its own entry in `station_sites`, else its group's."""
    return sites.get(host) or (sites.get(group) if group else None)


async def _order(
    sites: dict[str, str],
    action: Literal["logoff", "disconnect"],
    target: Target,
    response: Response,
    principal: Principal,
    deps: handlers.Deps,
    idempotency_key: str | None,
) -> Ordered:
    hosts, owner = await _hosts(deps, target)
    if principal.sites is not None:
        records = dict(await deps.presence.records(hosts=[h.host for h in hosts]))
        for h in hosts:
            record = records.get(h.host)
            group = record.group if record is not None else target.group
            if not principal.sees_site(station_site(sites, h.host, group)):
                raise Problem(404, f"no agent has reported host {h.host!r}", slug="unknown-host")
    order = AdminOrder(
        action=action,
        session_id=target.session_id,
        all_sessions=target.user is None and target.session_id is None,
        group=target.group,
    )
    created, rid = await handlers.accept_admin(
        deps,
        subject=_subject(target, owner),
        reason=target.reason,
        requested_by=principal.name,
        order=order,
        hosts=hosts,
        idempotency_key=idempotency_key,
        principal=principal.name,
        fingerprint=fingerprint(action, target),
    )
    return Ordered(
        request_id=rid,
        status="accepted",
        hosts=[h.host for h in hosts],
        links=mark_accepted(response, rid, created),
    )


@accepts(
    router,
    "/sessions:end",
    Ordered,
    "End (log off) one session, a user's sessions, or every session of a host or group",
)
async def end_sessions(body: Target, principal: Admin, order: OrderDep) -> Ordered:
    return await _ordered("logoff", body, principal, order)


@accepts(
    router,
    "/sessions:suspend",
    Ordered,
    "Suspend (disconnect) one session or a user's sessions; programs keep running",
)
async def suspend_sessions(body: Target, principal: Admin, order: OrderDep) -> Ordered:
    if body.user is None and body.session_id is None:
        raise Problem(
            422,
            "suspend needs a `user` or a `session_id`; to clear a room use sessions:end",
            slug="invalid-request",
        )
    return await _ordered("disconnect", body, principal, order)


async def _ordered(
    action: Literal["logoff", "disconnect"], target: Target, principal: Principal, order: Order
) -> Ordered:
    sites = order.request.app.state.settings.station_sites
    return await _order(
        sites, action, target, order.response, principal, order.deps, order.idempotency_key
    )
