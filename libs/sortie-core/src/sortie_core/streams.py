"""Stream and consumer-group names: the only place they are spelled out."""

from __future__ import annotations

import re

LOGOUT_REQUESTED = "logout.requested"
OFFBOARD_REQUESTED = "offboard.requested"
REVOCATION_COMPLETED = "revocation.completed"
SSO_LOGOUT_REQUESTED = "sso.logout.requested"
SSO_LOGOUT_COMPLETED = "sso.logout.completed"
REQUEST_FINISHED = "request.finished"
DEADLETTER = "deadletter"
# Not in the first design table: agents announce that their presence record changed.
# The record itself lives in a key only that agent may write (see presence.py).
AGENT_PRESENCE = "agent.presence"

WORKSTATION_PREFIX = "workstation."
# Each agent reports on a stream only its own Redis account may append to, so it cannot
# forge another service's or another host's report; it then announces on AGENT_PRESENCE.
AGENT_RESULTS_PREFIX = "agent.results."

GROUP_ORCHESTRATOR = "orchestrator"
GROUP_M365 = "m365-worker"
GROUP_ENT = "ent-worker"
GROUP_WORKSTATION = "workstation-agent"

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def valid_host(host: str) -> bool:
    """Host names are plain labels: no dots, so `workstation.<host>` is unambiguous."""
    return bool(_HOST_RE.fullmatch(host))


def workstation_stream(host: str) -> str:
    if not valid_host(host):
        raise ValueError(f"invalid workstation host name: {host!r}")
    return f"{WORKSTATION_PREFIX}{host.lower()}"


def agent_results_stream(host: str) -> str:
    if not valid_host(host):
        raise ValueError(f"invalid workstation host name: {host!r}")
    return f"{AGENT_RESULTS_PREFIX}{host.lower()}"


ALL_FIXED_STREAMS = (
    LOGOUT_REQUESTED,
    OFFBOARD_REQUESTED,
    REVOCATION_COMPLETED,
    SSO_LOGOUT_REQUESTED,
    SSO_LOGOUT_COMPLETED,
    REQUEST_FINISHED,
    DEADLETTER,
    AGENT_PRESENCE,
)
