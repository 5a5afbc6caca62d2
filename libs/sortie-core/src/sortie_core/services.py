"""Who does what: the service names and action names of the contract, once.

A report's `service` is `m365`, `ent`, `sso` or `workstation:<host>`; each service's
actions are listed here, and `expected_actions` says which ones a request waits for (so
the orchestrator can name a step a service never reported).
"""

from __future__ import annotations

from enum import StrEnum

from .events import OFFBOARD_M365_ORDER, Kind, M365Action

M365 = "m365"
ENT = "ent"
SSO = "sso"
_WORKSTATION = "workstation:"


def workstation_service(host: str) -> str:
    return f"{_WORKSTATION}{host.lower()}"


def host_of(service: str) -> str | None:
    """The host of a `workstation:<host>` service, None for the others."""
    return service[len(_WORKSTATION) :] if service.startswith(_WORKSTATION) else None


class SsoAction(StrEnum):
    DESTROY_SSO_SESSION = "destroy_sso_session"  # one session, by its TGT
    DESTROY_ALL_SSO_SESSIONS = "destroy_all_sso_sessions"  # every session of the user


class EntAction(StrEnum):
    APP_LOGOUT = "app_logout"  # `app_logout:<application>` per application
    DISABLE_ACCOUNT = "disable_account"


class WorkstationAction(StrEnum):
    LOGOFF = "logoff"
    DISCONNECT = "disconnect"
    LOCK = "lock"
    CLOSE_BROWSERS = "close_browsers"


# The error code of an application's step when no service ticket of the user is known for it
# (the CAS could not be asked): the SSO logout then logs it out first (app_logout_first).
CAS_SLO_NO_TICKET = "cas_slo_no_ticket"


def app_action(app: str) -> str:
    return f"{EntAction.APP_LOGOUT.value}:{app}"


# What an offboarding's `actions` may name.
OFFBOARD_ACTIONS = frozenset(
    {a.value for a in OFFBOARD_M365_ORDER}
    | {EntAction.APP_LOGOUT.value, EntAction.DISABLE_ACCOUNT.value, WorkstationAction.LOGOFF.value}
)


def expected_actions(kind: Kind, service: str, actions: list[str]) -> list[str]:
    """Actions a service is expected to report; used to name steps it never reported."""
    if service == M365:
        if kind == Kind.LOGOUT:
            return [M365Action.REVOKE_SESSIONS.value]
        return [a.value for a in OFFBOARD_M365_ORDER if not actions or a.value in actions]
    if service == ENT:
        return [EntAction.APP_LOGOUT.value]
    if host_of(service) is not None:
        if kind == Kind.WORKSTATION_ADMIN and actions:
            return [actions[0]]
        return [WorkstationAction.LOGOFF.value]
    if service == SSO:
        action = (
            SsoAction.DESTROY_SSO_SESSION
            if kind == Kind.LOGOUT
            else SsoAction.DESTROY_ALL_SSO_SESSIONS
        )
        return [action.value]
    return ["unknown"]
