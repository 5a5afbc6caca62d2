"""Who does what: the service names and action names of the contract, once.

A report's `service` is `m365`, `ent`, `sso` or `workstation:<host>`; each service's
actions are listed here, and `expected_actions` says which ones a request waits for (so
the orchestrator can name a step a service never reported).
"""

from __future__ import annotations

from enum import StrEnum

from .events import OFFBOARD_M365_ORDER, Kind, M365Action
from .records import Record

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


# Exchange Online's Get-/Set-CASMailbox switches for every client protocol of one mailbox
# (what disable_mail_protocols turns off and its reversal turns back on).
MAIL_PROTOCOLS = (
    "OWAEnabled",
    "ActiveSyncEnabled",
    "MAPIEnabled",
    "EwsEnabled",
    "PopEnabled",
    "ImapEnabled",
    "OutlookMobileEnabled",
)

# The error code of an application's step when no service ticket of the user is known for it
# (the CAS could not be asked): the SSO logout then logs it out first (app_logout_first).
CAS_SLO_NO_TICKET = "cas_slo_no_ticket"


def app_action(app: str) -> str:
    return f"{EntAction.APP_LOGOUT.value}:{app}"


# What a reversal reports (service m365): `restore_<...>` per restorable original action,
# and the Temporary Access Pass that replaces the password (never restored). Removed
# authentication methods are not restorable: the pass is how the user registers again.
M365_RESTORE_ACTIONS: dict[str, str] = {
    M365Action.BLOCK_SIGN_IN: "restore_block_sign_in",
    M365Action.DISABLE_MAIL_PROTOCOLS: "restore_mail_protocols",
    M365Action.REMOVE_LICENSES: "restore_licenses",
    M365Action.REMOVE_GROUP_MEMBERSHIPS: "restore_group_memberships",
    M365Action.DISABLE_DEVICES: "restore_devices",
    M365Action.SET_AUTO_REPLY: "restore_auto_reply",
    M365Action.CONVERT_TO_SHARED_MAILBOX: "restore_mailbox_type",
    M365Action.HIDE_FROM_ADDRESS_LISTS: "restore_address_list_visibility",
    M365Action.DELEGATE_MAILBOX: "restore_delegate_mailbox",
    M365Action.DELEGATE_ONEDRIVE: "restore_delegate_onedrive",
}
ISSUE_TEMPORARY_ACCESS_PASS = "issue_temporary_access_pass"


def m365_reversal_actions(restore: dict[str, Record], issue_tap: bool) -> list[str]:
    """What the m365-worker reports for a reversal of `restore` (original action ->
    its `recorded`), in the order it restores them."""
    named = [M365_RESTORE_ACTIONS[a] for a in M365_RESTORE_ACTIONS if a in restore]
    return [*named, ISSUE_TEMPORARY_ACCESS_PASS] if issue_tap else named


def m365_offboard_actions(actions: list[str] | tuple[str, ...]) -> list[str]:
    """The M365 actions of an offboarding naming `actions` (in their order, once each),
    or the default ones when it names none."""
    if not actions:
        return [a.value for a in OFFBOARD_M365_ORDER]
    known = {a.value for a in M365Action}
    return list(dict.fromkeys(a for a in actions if a in known))


# What an offboarding's `actions` may name.
OFFBOARD_ACTIONS = frozenset(
    {a.value for a in M365Action}
    | {EntAction.APP_LOGOUT.value, EntAction.DISABLE_ACCOUNT.value, WorkstationAction.LOGOFF.value}
)


_M365_REVERSAL = frozenset({*M365_RESTORE_ACTIONS.values(), ISSUE_TEMPORARY_ACCESS_PASS})


def expected_actions(kind: Kind, service: str, actions: list[str]) -> list[str]:
    """Actions a service is expected to report; used to name steps it never reported."""
    if kind == Kind.REVERSAL:  # `actions`: the reversal's (m365_reversal_actions)
        return [a for a in actions if a in _M365_REVERSAL] if service == M365 else []
    if service == M365:
        if kind == Kind.LOGOUT:
            return [M365Action.REVOKE_SESSIONS.value]
        return m365_offboard_actions(actions)
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


# Kept in Redis by the M365 worker (quota.py), read by the orchestrator: how long a Graph
# write queued now would wait for the tenant's quota, and Graph's measured latency.
def expected_wait_key(tenant_key: str) -> str:
    return f"sortie:m365:expected_wait_s:{tenant_key}"


def graph_latency_key(tenant_key: str) -> str:
    return f"sortie:m365:graph_latency_s:{tenant_key}"
