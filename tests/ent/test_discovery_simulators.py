"""Discovery and read-back over real HTTP against the project's CAS and ENT applications
simulators: a logout that names no ticket still ends every application session the CAS
knows of, and the SSO session is read back gone."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from sortie_core.events import Kind, Outcome, SsoLogoutRequested, Verification
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.http import CasRestSessions, HttpAppLogout
from sortie_ent.handlers import handle_logout, handle_offboard, handle_sso_logout
from sortie_ent.registry import Registry, parse_registry
from sortie_simulators import cas, entapps
from tests.support.stub_http import ServedApp
from tests.support.workers import ALICE, logout, offboard

POLICY = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02, verify_delay_s=0.01)
PASSWORD = secrets.token_urlsafe(16)
CAS_APPS = ("esper", "escada", "pronote")


@dataclass
class Sims:
    cas: httpx.AsyncClient
    apps: httpx.AsyncClient
    apps_url: str
    registry: Registry
    sso: CasRestSessions


@pytest.fixture
def served() -> Iterator[tuple[str, str]]:
    cas_app = ServedApp(cas.create_app(actuator_user="sortie", actuator_password=PASSWORD)).start()
    apps_app = ServedApp(entapps.create_app(apps=[(a, "cas_slo") for a in CAS_APPS])).start()
    try:
        yield cas_app.url, apps_app.url
    finally:
        cas_app.stop()
        apps_app.stop()


@pytest.fixture
async def sims(served: tuple[str, str]) -> AsyncIterator[Sims]:
    cas_url, apps_url = served
    registry = parse_registry(
        "applications:\n"
        + "".join(
            f"  - name: {a}\n    protocol: cas_slo\n"
            f"    service_patterns: ['{re.escape(apps_url)}/{a}/.*']\n"
            for a in CAS_APPS
        )
    )
    sso = CasRestSessions(
        f"{cas_url}/cas", actuator_user=SecretStr("sortie"), actuator_password=SecretStr(PASSWORD)
    )
    async with (
        httpx.AsyncClient(base_url=cas_url) as cas_client,
        httpx.AsyncClient(base_url=apps_url) as apps_client,
    ):
        yield Sims(cas_client, apps_client, apps_url, registry, sso)
    await sso.aclose()


async def sign_in(sims: Sims, user: str, *apps: str) -> str:
    """A CAS session reaching `apps`, and the session each application opened for it."""
    services = [f"{sims.apps_url}/{a}/" for a in apps]
    made = await sims.cas.post("/_sim/sessions", json={"username": user, "services": services})
    body = made.json()
    for app, st in zip(apps, body["service_tickets"], strict=True):
        opened = await sims.apps.post(
            f"/_sim/apps/{app}/sessions", json={"user": user, "ticket": st["ticket"]}
        )
        assert opened.status_code == 201
    tgt: str = body["tgt"]
    return tgt


async def app_sessions(sims: Sims, user: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for app in CAS_APPS:
        listed = (await sims.apps.get(f"/_sim/apps/{app}/sessions")).json()
        counts[app] = sum(1 for s in listed if s["user"] == user)
    return counts


async def test_logout_without_tickets_ends_every_session_the_cas_knows(sims: Sims) -> None:
    await sign_in(sims, "alice", "esper", "escada")
    await sign_in(sims, "alice", "pronote", "esper")
    await sign_in(sims, "bob", "esper")
    assert await app_sessions(sims, "alice") == {"esper": 2, "escada": 1, "pronote": 1}

    apps = HttpAppLogout()
    try:
        result = await handle_logout(
            logout(), registry=sims.registry, apps=apps, sso=sims.sso, policy=POLICY
        )
    finally:
        await apps.aclose()
    assert result is not None
    assert {s.action: (s.outcome, s.verification) for s in result.steps} == {
        f"app_logout:{a}": (Outcome.SUCCEEDED, Verification.ACKNOWLEDGED) for a in CAS_APPS
    }
    assert sum(len(s.items) for s in result.steps) == 4
    d = result.discovery
    assert d is not None
    assert (d.sso_sessions_found, d.tickets_found, d.tickets_from_caller) == (2, 4, 0)
    assert d.applications == CAS_APPS
    # Every application session of the user ended; Bob's did not.
    assert await app_sessions(sims, "alice") == dict.fromkeys(CAS_APPS, 0)
    assert (await app_sessions(sims, "bob"))["esper"] == 1

    sso_done = await handle_sso_logout(
        SsoLogoutRequested(request_id=result.request_id, subject=ALICE, kind=Kind.LOGOUT),
        sso=sims.sso,
        policy=POLICY,
    )
    [step] = sso_done.steps
    assert (step.action, step.verification) == ("destroy_all_sso_sessions", Verification.VERIFIED)
    assert sso_done.discovery is not None
    assert (sso_done.discovery.sso_sessions_found, sso_done.discovery.sso_sessions_ended) == (2, 2)
    assert [t["user"] for t in (await sims.cas.get("/_sim/tickets")).json()] == ["bob"]


async def test_logout_with_a_tgt_ends_that_sessions_applications(sims: Sims) -> None:
    here = await sign_in(sims, "alice", "esper", "escada")
    await sign_in(sims, "alice", "pronote")
    apps = HttpAppLogout()
    try:
        result = await handle_logout(
            logout(tgt=here), registry=sims.registry, apps=apps, sso=sims.sso, policy=POLICY
        )
    finally:
        await apps.aclose()
    assert result is not None
    assert {s.action for s in result.steps} == {"app_logout:esper", "app_logout:escada"}
    assert await app_sessions(sims, "alice") == {"esper": 0, "escada": 0, "pronote": 1}
    sso_done = await handle_sso_logout(
        SsoLogoutRequested(request_id=result.request_id, subject=ALICE, kind=Kind.LOGOUT, tgt=here),
        sso=sims.sso,
        policy=POLICY,
    )
    [step] = sso_done.steps
    assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED)
    assert step.evidence is not None and step.evidence.observed["tgt_known"] is False
    assert here not in sso_done.model_dump_json()
    assert len((await sims.cas.get("/_sim/tickets")).json()) == 1


async def test_offboard_ends_every_session_and_a_lying_cas_fails(sims: Sims) -> None:
    await sign_in(sims, "alice", "esper")
    await sign_in(sims, "alice", "escada")
    apps = HttpAppLogout()
    try:
        result = await handle_offboard(
            offboard(), registry=sims.registry, apps=apps, sso=sims.sso, policy=POLICY
        )
        assert result is not None
    finally:
        await apps.aclose()
    assert {s.action: s.outcome for s in result.steps} == {
        "app_logout:esper": Outcome.SUCCEEDED,
        "app_logout:escada": Outcome.SUCCEEDED,
    }
    assert await app_sessions(sims, "alice") == dict.fromkeys(CAS_APPS, 0)

    await sims.cas.post("/_sim/config", json={"keep_sessions_on_delete": True})
    event = SsoLogoutRequested(
        request_id=result.request_id, subject=ALICE, kind=Kind.OFFBOARD, all_sessions=True
    )
    [lied] = (await handle_sso_logout(event, sso=sims.sso, policy=POLICY)).steps
    assert (lied.outcome, lied.verification) == (Outcome.FAILED, Verification.CONTRADICTED)
    assert lied.evidence is not None and lied.evidence.observed["sso_sessions_of_user"] == 2
    await sims.cas.post("/_sim/config", json={"keep_sessions_on_delete": False})
    [ended] = (await handle_sso_logout(event, sso=sims.sso, policy=POLICY)).steps
    assert (ended.outcome, ended.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED)
