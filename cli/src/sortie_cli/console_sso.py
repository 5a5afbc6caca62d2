"""The console's sign-in for `sortie up`: the CAS simulator's login and an OpenID provider
simulator, with a demo role mapping, so that a person can sign in to `/ui/` as the
school's helpdesk would (README, "The helpdesk console").

Left alone when `SORTIE_ORCHESTRATOR_CONSOLE_SSO` is set (a real CAS or provider). The
demo people (sortie_simulators.demo) sign in with any password:

- CAS: `claire` (helpdesk of lycée A, site 0750001A), `sacha` (administrator);
- OpenID Connect: `dana` (helpdesk of lycée A), `sam` (administrator).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from sortie_simulators.demo import CONSOLE_ADMIN, DEMO_SITE_A, HELPDESK_A

SETTING = "SORTIE_ORCHESTRATOR_CONSOLE_SSO"
CLIENT_ID = "sortie-console"
HELPDESK_SCOPES = ["requests:read", "logout:write", "offboard:write"]
ADMIN_SCOPES = [*HELPDESK_SCOPES, "workstations:admin", "sessions:admin"]
BANNER = (
    "sign in with CAS as claire (helpdesk, site {site}) or sacha (admin),",
    "or with OpenID Connect as dana (helpdesk, site {site}) or sam (admin); any password",
)


@dataclass
class ConsoleSsoPlan:
    """What the stack adds: the orchestrator's setting, and the provider's client."""

    orchestrator_env: dict[str, str] = field(default_factory=dict)
    oidc_env: dict[str, str] = field(default_factory=dict)
    banner: tuple[str, ...] = ()


def demo_roles() -> list[dict[str, object]]:
    """Helpdesk of lycée A (its requests only) and administrators, by CAS attribute
    (`memberOf`) and by OpenID claim (`roles`, as Entra ID's app roles)."""
    roles: list[dict[str, object]] = []
    for claim in ("memberOf", "roles"):
        roles.append(
            {"claim": claim, "value": HELPDESK_A, "scopes": HELPDESK_SCOPES, "sites": [DEMO_SITE_A]}
        )
        roles.append({"claim": claim, "value": CONSOLE_ADMIN, "scopes": ADMIN_SCOPES})
    return roles


def plan_console_sso(
    configured: dict[str, str], api: str, cas_url: str | None, oidc_url: str
) -> ConsoleSsoPlan:
    """`cas_url`: the CAS simulator (None: a real CAS is configured, not used here);
    `oidc_url`: where the OpenID provider simulator will listen."""
    if configured.get(SETTING):
        return ConsoleSsoPlan()
    secret = secrets.token_urlsafe(24)
    sso: dict[str, object] = {
        "oidc": {"issuer": oidc_url, "client_id": CLIENT_ID, "client_secret": secret},
        "roles": demo_roles(),
    }
    if cas_url is not None:
        sso["cas"] = {"server_url": f"{cas_url}/cas", "label": "ENT (CAS)"}
    client = f"{CLIENT_ID}:{secret}:{api}/ui/login/oidc"
    return ConsoleSsoPlan(
        orchestrator_env={SETTING: json.dumps(sso)},
        oidc_env={"SORTIE_SIM_OIDC_CLIENT": client},
        banner=tuple(line.format(site=DEMO_SITE_A) for line in BANNER),
    )
