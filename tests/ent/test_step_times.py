"""A step's time covers the CAS discovery that named it: with a CAS answering in 100 ms,
each application logout and the SSO logout start when their look-up started, not after
it (issue 12's bound: slowest phase-1 step + SSO step + 50 ms covers the whole request)."""

from __future__ import annotations

import re
import secrets

import httpx
from pydantic import SecretStr

from sortie_core.events import Kind, Outcome, SsoLogoutRequested, utcnow
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.http import CasRestSessions, HttpAppLogout
from sortie_ent.handlers import handle_logout, handle_sso_logout
from sortie_ent.registry import parse_registry
from sortie_simulators import cas, entapps
from tests.support.stub_http import ServedApp
from tests.support.workers import ALICE, logout

POLICY = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02, verify_delay_s=0.01)
PASSWORD = secrets.token_urlsafe(16)
LATENCY_S = 0.1


async def test_steps_include_their_discovery() -> None:
    cas_app = ServedApp(
        cas.create_app(
            actuator_user="sortie", actuator_password=PASSWORD, latency_ms=1000 * LATENCY_S
        )
    ).start()
    apps_app = ServedApp(entapps.create_app(apps=[("esper", "cas_slo")])).start()
    registry = parse_registry(
        "applications:\n  - name: esper\n    protocol: cas_slo\n"
        f"    service_patterns: ['{re.escape(apps_app.url)}/esper/.*']\n"
    )
    sso = CasRestSessions(
        f"{cas_app.url}/cas",
        actuator_user=SecretStr("sortie"),
        actuator_password=SecretStr(PASSWORD),
    )
    apps = HttpAppLogout()
    try:
        async with httpx.AsyncClient(base_url=cas_app.url) as client:
            made = await client.post(
                "/_sim/sessions",
                json={"username": "alice", "services": [f"{apps_app.url}/esper/"]},
            )
            assert made.status_code == 201
        asked = utcnow()
        result = await handle_logout(logout(), registry=registry, apps=apps, sso=sso, policy=POLICY)
        assert result is not None
        [step] = result.steps
        assert step.outcome == Outcome.SUCCEEDED
        assert (step.started_at - asked).total_seconds() < LATENCY_S / 2
        assert step.duration_seconds >= LATENCY_S  # the discovery, at least

        asked = utcnow()
        done = await handle_sso_logout(
            SsoLogoutRequested(request_id=result.request_id, subject=ALICE, kind=Kind.LOGOUT),
            sso=sso,
            policy=POLICY,
        )
        [sso_step] = done.steps
        assert sso_step.outcome == Outcome.SUCCEEDED
        assert (sso_step.started_at - asked).total_seconds() < LATENCY_S / 2
        # Look-up, delete and read-back: three CAS calls.
        assert sso_step.duration_seconds >= 3 * LATENCY_S
    finally:
        await apps.aclose()
        await sso.aclose()
        cas_app.stop()
        apps_app.stop()
