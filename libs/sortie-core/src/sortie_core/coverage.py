"""Where the user had access: what a worker discovers (`Discovery`, on its report) and
what the orchestrator sums from every report (`Coverage`, on `request.finished`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .model import Frozen


class Discovery(Frozen):
    """What a worker learnt, from the system that knows, of where the user has access.
    Carried by a report; the orchestrator sums the reports into the request's coverage."""

    # e.g. "graph", "cas ssoSessions actuator", "agent presence"
    source: Annotated[str, Field(max_length=200)]
    # The resolved identity there (e.g. the M365 object id and UPN), None when unresolved.
    identity: Annotated[str, Field(max_length=400)] | None = None
    # The identifiers tried, in order (e.g. "upn", "mail", "employeeId=…").
    identity_tried: Annotated[
        tuple[Annotated[str, Field(max_length=400)], ...], Field(max_length=20)
    ] = ()
    # SSO sessions (TGTs) found for the user, and how many of them were ended.
    sso_sessions_found: Annotated[int, Field(ge=0)] | None = None
    sso_sessions_ended: Annotated[int, Field(ge=0)] | None = None
    # Registered applications the sessions reached (by name) and tickets found / sent by the caller.
    applications: Annotated[
        tuple[Annotated[str, Field(max_length=128)], ...], Field(max_length=200)
    ] = ()
    tickets_found: Annotated[int, Field(ge=0)] | None = None
    tickets_from_caller: Annotated[int, Field(ge=0)] | None = None
    # Why discovery could not be made, if it could not.
    error: Annotated[str, Field(max_length=500)] | None = None


class Coverage(Frozen):
    """Where the user had access and what was ended, summed from the services' reports."""

    m365_identity: str | None = None
    m365_identity_tried: tuple[str, ...] = ()
    sso_sessions_found: int | None = None
    sso_sessions_ended: int | None = None
    applications: tuple[str, ...] = ()
    tickets_found: int | None = None
    tickets_from_caller: int | None = None
    hosts: tuple[str, ...] = ()
    steps_total: int = 0
    steps_verified: int = 0
    steps_acknowledged: int = 0
    steps_not_proven: int = 0
