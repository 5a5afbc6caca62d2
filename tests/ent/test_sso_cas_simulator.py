"""The final SSO logout, over real HTTP against the CAS simulator: the REST ticket API for
the session's TGT, the `ssoSessions` actuator (HTTP Basic) for every session of the user."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from sortie_core.events import Kind, Outcome, SsoLogoutRequested
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.http import CasRestSessions
from sortie_ent.handlers import handle_sso_logout
from sortie_simulators import cas
from tests.support.stub_http import ServedApp
from tests.support.workers import ALICE, logout

POLICY = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02, verify_delay_s=0.01)
PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture
def cas_url() -> Iterator[str]:
    served = ServedApp(cas.create_app(actuator_user="sortie", actuator_password=PASSWORD)).start()
    try:
        yield served.url
    finally:
        served.stop()


def sso_request(tgt: str | None, *, all_sessions: bool) -> SsoLogoutRequested:
    return SsoLogoutRequested(
        request_id=logout().request_id,
        subject=ALICE,
        kind=Kind.OFFBOARD if all_sessions else Kind.LOGOUT,
        tgt=tgt,
        all_sessions=all_sessions,
    )


async def run(
    cas_url: str, event: SsoLogoutRequested, password: str = PASSWORD
) -> tuple[Outcome, str | None]:
    sessions = CasRestSessions(
        f"{cas_url}/cas",
        actuator_user=SecretStr("sortie"),
        actuator_password=SecretStr(password),
        timeout_s=5,
    )
    try:
        result = await handle_sso_logout(event, sso=sessions, policy=POLICY)
    finally:
        await sessions.aclose()
    [step] = result.steps
    if step.error is not None:
        assert PASSWORD not in step.error.message
    return step.outcome, step.verification.value if step.verification else None


VERIFIED = (Outcome.SUCCEEDED, "verified")


async def test_sso_logout_ends_the_tgt_then_every_session(cas_url: str) -> None:
    user = ALICE.sso_username
    async with httpx.AsyncClient(base_url=cas_url) as sim:

        async def new_session(username: str) -> str:
            made = await sim.post(
                "/_sim/sessions", json={"username": username, "services": ["http://a.test/"]}
            )
            tgt: str = made.json()["tgt"]
            return tgt

        async def alive(tgt: str) -> bool:
            return (await sim.get(f"/cas/v1/tickets/{tgt}")).status_code == 200

        here, elsewhere, bobs = (
            await new_session(user),
            await new_session(user),
            await new_session("bob"),
        )

        # A logout carrying its TGT ends that SSO session only.
        assert await run(cas_url, sso_request(here, all_sessions=False)) == VERIFIED
        assert not await alive(here)
        assert await alive(elsewhere) and await alive(bobs)
        # Again: the CAS answers 200 and the read-back shows the TGT gone.
        assert await run(cas_url, sso_request(here, all_sessions=False)) == VERIFIED

        # The actuator refuses a wrong password; nothing changes.
        wrong = await run(cas_url, sso_request(None, all_sessions=True), password="wrong")
        assert wrong == (Outcome.FAILED, None)
        assert await alive(elsewhere)

        # Offboarding: every SSO session of the user, and nobody else's.
        assert await run(cas_url, sso_request(None, all_sessions=True)) == VERIFIED
        assert not await alive(elsewhere)
        assert await alive(bobs)
        listed = await sim.get(
            "/cas/actuator/ssoSessions",
            params={"type": "ALL", "username": user},
            auth=("sortie", PASSWORD),
        )
        assert listed.status_code == 200
        assert user not in listed.text
        events = [e["what"] for e in (await sim.get("/_sim/events")).json()]
        assert events == ["tgt_deleted", "sso_sessions_deleted"]


async def test_a_cas_without_its_rest_module_or_that_lies_fails_the_step(cas_url: str) -> None:
    async with httpx.AsyncClient(base_url=cas_url) as sim:
        made = await sim.post("/_sim/sessions", json={"username": ALICE.sso_username})
        tgt = made.json()["tgt"]
        await sim.post("/_sim/config", json={"tickets_api_missing": True})
        assert await run(cas_url, sso_request(tgt, all_sessions=False)) == (Outcome.FAILED, None)
        await sim.post(
            "/_sim/config", json={"tickets_api_missing": False, "keep_sessions_on_delete": True}
        )
        lied = (Outcome.FAILED, "contradicted")
        assert await run(cas_url, sso_request(tgt, all_sessions=False)) == lied
        assert await run(cas_url, sso_request(None, all_sessions=True)) == lied
        assert len((await sim.get("/_sim/tickets")).json()) == 1
