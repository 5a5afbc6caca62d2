"""Demo seed data, shared by every simulator's `--seed-demo`, by `sortie up` and by tests.

Alice has a live SSO session (`DEMO_TGT`) with one service ticket per CAS application, a
session in every demo ENT application and an active session on `pc-101`. Bob exists in
Microsoft 365 and sits at `pc-102`; he has no SSO session. Dave exists in Microsoft 365
only (employeeId `E1004`, onPremisesSamAccountName `dave`).
"""

from __future__ import annotations

from dataclasses import dataclass

DEMO_DOMAIN = "example.org"


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str  # ENT uid
    upn: str  # Microsoft 365 userPrincipalName
    mail: str
    display_name: str
    graph_id: str  # Microsoft Graph object id
    cas_username: str
    windows_account: str
    host: str  # the workstation the user sits at
    # Directory attributes a site can map its user ids to (SORTIE_M365_IDENTITY_LOOKUPS).
    employee_id: str | None = None
    sam_account_name: str | None = None


ALICE = DemoUser(
    username="alice",
    upn="alice@example.org",
    mail="alice@example.org",
    display_name="Alice Martin",
    graph_id="a11ce000-0000-4000-8000-000000000001",
    cas_username="alice",
    windows_account="alice",
    host="pc-101",
)
BOB = DemoUser(
    username="bob",
    upn="bob@example.org",
    mail="bob@example.org",
    display_name="Bob Durand",
    graph_id="b0b00000-0000-4000-8000-000000000002",
    cas_username="bob",
    windows_account="bob",
    host="pc-102",
)
# Dave is known to Microsoft 365 by his UPN and AD account name only: an offboarding that
# names him by his ENT uid finds him only through a configured identity mapping.
DAVE = DemoUser(
    username="dave",
    upn="dave@example.org",
    mail="dave@example.org",
    display_name="Dave Moreau",
    graph_id="da7e0000-0000-4000-8000-000000000004",
    cas_username="dave",
    windows_account="dave",
    host="",
    employee_id="E1004",
    sam_account_name="dave",
)
DEMO_USERS: tuple[DemoUser, ...] = (ALICE, BOB, DAVE)

# Ports `python -m sortie_simulators` listens on when `--port` is not given.
DEFAULT_PORTS = {"graph": 8101, "cas": 8102, "entapps": 8103, "workstations": 8104, "oidc": 8105}
DEFAULT_ENTAPPS_URL = f"http://127.0.0.1:{DEFAULT_PORTS['entapps']}"

# ENT applications of the demo, as (name, protocol).
DEMO_APPS: tuple[tuple[str, str], ...] = (
    ("esper", "cas_slo"),
    ("escada", "cas_slo"),
    ("mer", "http"),
    ("ism", "oidc_bcl"),
)
DEMO_CAS_APPS: tuple[str, ...] = tuple(name for name, proto in DEMO_APPS if proto == "cas_slo")

# Alice's SSO session and the service tickets the CAS issued in it, one per CAS app.
DEMO_TGT = "TGT-1-alice-demo-sortie"
DEMO_SERVICE_TICKETS: dict[str, str] = {
    "esper": "ST-1-esper-alice-demo-sortie",
    "escada": "ST-2-escada-alice-demo-sortie",
}

# Workstation host -> the demo user with an active session there.
DEMO_HOSTS: dict[str, str] = {ALICE.host: ALICE.windows_account, BOB.host: BOB.windows_account}


def demo_service_url(entapps_url: str, app: str) -> str:
    """The CAS service URL of a demo application hosted by the ENT apps simulator."""
    return f"{entapps_url.rstrip('/')}/{app}/"


def demo_service_tickets(entapps_url: str = DEFAULT_ENTAPPS_URL) -> list[dict[str, str]]:
    """Alice's service tickets as `{service, ticket}`, the shape of a logout's sso_session."""
    return [
        {"service": demo_service_url(entapps_url, app), "ticket": DEMO_SERVICE_TICKETS[app]}
        for app in DEMO_CAS_APPS
    ]


# The helpdesk people of the demo console (`sortie up`), as the CAS releases their
# attributes and the OpenID provider their claims; the demo role mapping
# (sortie_cli.console_sso) gives a role per value. Any password signs them in.
DEMO_SITE_A, DEMO_SITE_B = "0750001A", "0750002B"
HELPDESK_A, CONSOLE_ADMIN = "helpdesk-lycee-a", "sortie-admin"
DEMO_CAS_PEOPLE: dict[str, dict[str, list[str]]] = {
    "claire": {"memberOf": [HELPDESK_A]},
    "sacha": {"memberOf": [CONSOLE_ADMIN]},
}
DEMO_OIDC_PEOPLE: dict[str, dict[str, list[str]]] = {
    "dana": {"roles": [HELPDESK_A]},
    "sam": {"roles": [CONSOLE_ADMIN]},
}
