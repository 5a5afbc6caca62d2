"""Discovery: where the user has access, asked of the CAS itself (its `ssoSessions`
actuator lists the user's SSO sessions and, per TGT, every service ticket and service URL).

Reports name a ticket or a TGT by an index and a short sha256 prefix, never the value.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sortie_core.errors import SortieError
from sortie_core.events import Discovery, ServiceTicket, Subject

from .adapters import CasSession, SsoSessions
from .registry import Registry, url_host

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Found:
    """Discovery's result: the tickets to log out (the CAS's and the caller's, once each)
    and the report. `error` says why the CAS could not be asked."""

    tickets: tuple[ServiceTicket, ...]
    discovery: Discovery
    error: str | None = None


def ticket_ref(index: int, ticket: str, service: str | None = None) -> str:
    """How a report names a ticket or TGT: never the credential, a short hash of it."""
    digest = hashlib.sha256(ticket.encode()).hexdigest()[:12]
    host = f"{url_host(service)[:80]}:" if service else ""
    return f"{index}:{host}{digest}"


def merge_tickets(*groups: Iterable[ServiceTicket]) -> tuple[ServiceTicket, ...]:
    merged: dict[str, ServiceTicket] = {}
    for group in groups:
        for st in group:
            merged.setdefault(st.ticket, st)
    return tuple(merged.values())


async def discover(
    sso: SsoSessions,
    subject: Subject,
    registry: Registry,
    *,
    tgt: str | None = None,
    caller: Sequence[ServiceTicket] = (),
    kept: Sequence[ServiceTicket] = (),
) -> Found:
    """Ask the CAS which SSO sessions the user has (only `tgt`'s when given) and which
    services each reached; merge in the caller's tickets, never required, and those an
    earlier attempt kept (`kept`: the CAS may have forgotten them since)."""
    error: str | None = None
    sessions: list[CasSession] = []
    try:
        sessions = await sso.user_sessions(subject.sso_username)
    except SortieError as exc:
        error = exc.message
    except Exception as exc:
        log.exception("CAS discovery raised an unexpected error")
        error = f"discovery failed ({type(exc).__name__})"
    if tgt is not None:
        sessions = [s for s in sessions if s.tgt == tgt]
    found = [st for session in sessions for st in session.services]
    tickets = merge_tickets(found, caller, kept)
    reached = {app.name for st in tickets if (app := registry.match(st.service)) is not None}
    known = error is None
    discovery = Discovery(
        source=sso.source,
        sso_sessions_found=len(sessions) if known else None,
        applications=tuple(a.name for a in registry.applications if a.name in reached),
        tickets_found=len(found) if known else None,
        tickets_from_caller=len(caller),
        error=error[:500] if error else None,
    )
    return Found(tickets, discovery, error)
