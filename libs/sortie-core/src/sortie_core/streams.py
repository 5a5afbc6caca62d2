"""Stream and consumer-group names: the only place they are spelled out."""

from __future__ import annotations

import re

LOGOUT_REQUESTED = "logout.requested"
OFFBOARD_REQUESTED = "offboard.requested"
REVERSAL_REQUESTED = "reversal.requested"
REVOCATION_COMPLETED = "revocation.completed"
SSO_LOGOUT_REQUESTED = "sso.logout.requested"
SSO_LOGOUT_COMPLETED = "sso.logout.completed"
REQUEST_FINISHED = "request.finished"
DEADLETTER = "deadletter"

WORKSTATION_PREFIX = "workstation."
# Each agent reports on a stream only its own Redis account may append to, so it cannot
# forge another service's or another host's report. An agent writes no shared stream at
# all: an entry with the largest id, or MAXLEN 0, would block or empty it for every host.
AGENT_RESULTS_PREFIX = "agent.results."
# What the agent's own consumer gives up (its `deadletter`).
AGENT_DEADLETTER_PREFIX = "agent.deadletter."
# Pub/Sub, not a stream: "host <h> changed (a report or its presence record)". Nothing
# one agent publishes can delay another's; a lost wake-up is made good by the
# orchestrator's periodic re-read (see sortie_orchestrator/adapters/agent_watch.py).
AGENT_WAKE_PREFIX = "sortie:agent-wake:"

GROUP_ORCHESTRATOR = "orchestrator"
GROUP_M365 = "m365-worker"
GROUP_ENT = "ent-worker"
GROUP_WORKSTATION = "workstation-agent"

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def valid_host(host: str) -> bool:
    """Host names are plain labels: no dots, so `workstation.<host>` is unambiguous."""
    return bool(_HOST_RE.fullmatch(host))


def _of_host(prefix: str, host: str) -> str:
    if not valid_host(host):
        raise ValueError(f"invalid workstation host name: {host!r}")
    return f"{prefix}{host.lower()}"


def workstation_stream(host: str) -> str:
    return _of_host(WORKSTATION_PREFIX, host)


def agent_results_stream(host: str) -> str:
    return _of_host(AGENT_RESULTS_PREFIX, host)


def agent_deadletter_stream(host: str) -> str:
    return _of_host(AGENT_DEADLETTER_PREFIX, host)


def agent_wake_channel(host: str) -> str:
    return _of_host(AGENT_WAKE_PREFIX, host)


def host_of_wake_channel(channel: str) -> str | None:
    host = channel.removeprefix(AGENT_WAKE_PREFIX)
    return host if channel.startswith(AGENT_WAKE_PREFIX) and valid_host(host) else None


ALL_FIXED_STREAMS = (
    LOGOUT_REQUESTED,
    OFFBOARD_REQUESTED,
    REVERSAL_REQUESTED,
    REVOCATION_COMPLETED,
    SSO_LOGOUT_REQUESTED,
    SSO_LOGOUT_COMPLETED,
    REQUEST_FINISHED,
    DEADLETTER,
)
