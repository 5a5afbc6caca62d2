"""`sortie up` plans the console's sign-in: the OpenID provider simulator as a process of
the stack, registered with the orchestrator's redirect URI, and the orchestrator's
`SORTIE_ORCHESTRATOR_CONSOLE_SSO` naming it and the CAS simulator with the demo roles; a
configured setting is left alone. The sign-ins themselves run in
tests/orchestrator/statuspage/test_console_browser.py, on the started stack."""

from __future__ import annotations

import json
from pathlib import Path

from sortie_cli.console_sso import SETTING
from sortie_cli.stack import Stack
from sortie_orchestrator.http.ui.sso import ConsoleSso


def test_the_stack_starts_an_openid_provider_and_configures_the_console(tmp_path: Path) -> None:
    stack = Stack(workdir=tmp_path, api_port=0, base_env={"PATH": "/usr/bin:/bin"})
    procs = {p.name: p for p in stack.plan()}
    oidc, orchestrator = procs["sim-oidc"], procs["orchestrator"]
    api = stack.urls["api"]
    sso = ConsoleSso.model_validate_json(orchestrator.env[SETTING])
    assert sso.oidc is not None and sso.cas is not None
    assert sso.oidc.issuer == stack.urls["sim_oidc"]
    assert sso.cas.server_url == stack.urls["sim_cas"] + "/cas"
    client_id, secret, redirect = oidc.env["SORTIE_SIM_OIDC_CLIENT"].split(":", 2)
    assert (client_id, redirect) == (sso.oidc.client_id, f"{api}/ui/login/oidc")
    assert secret == sso.oidc.client_secret.get_secret_value() and len(secret) >= 24
    assert secret not in " ".join(oidc.argv + orchestrator.argv)  # not on a command line
    helpdesk = [r for r in sso.roles if r.value == "helpdesk-lycee-a"]
    assert {r.claim for r in helpdesk} == {"memberOf", "roles"}
    assert all(r.sites == {"0750001A"} and "sessions:admin" not in r.scopes for r in helpdesk)
    assert stack.urls["console"] == f"{api}/ui/"
    assert any("claire" in line for line in stack.console_banner)


def test_a_configured_console_sign_in_is_left_alone(tmp_path: Path) -> None:
    mine = json.dumps({"cas": {"server_url": "https://cas.school.example/cas"}, "roles": []})
    env = {"PATH": "/usr/bin:/bin", SETTING: mine}
    stack = Stack(workdir=tmp_path, api_port=0, base_env=env)
    procs = {p.name: p for p in stack.plan()}
    assert "sim-oidc" not in procs and "console" not in stack.urls
    assert procs["orchestrator"].env[SETTING] == mine
    assert stack.console_banner == ()
