"""The console in a real headless Chromium over a real orchestrator and Redis, signed in
through the project's CAS and OpenID Connect simulators (served over HTTP): the helpdesk
of one school sees only that school's requests, previews then starts an offboarding,
cancels a scheduled one and retries a failed step; French and English.

Screenshots go to $SORTIE_SCREENSHOTS (default /tmp/sortie-screenshots), as console-*.png:

    SORTIE_SCREENSHOTS=/tmp/shots .venv/bin/pytest \
        tests/orchestrator/statuspage/test_console_browser.py
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import (
    RevocationCompleted,
    Subject,
)
from sortie_orchestrator.http.ui.sso import CasLogin, ConsoleRole, ConsoleSso, OidcLogin
from sortie_simulators import cas, oidc_provider
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.statuspage import workers
from tests.orchestrator.statuspage.cdp import Page, browser
from tests.orchestrator.statuspage.test_pages_browser import SHOTS, until
from tests.support.live import TOKEN, live_orchestrator
from tests.support.stub_http import ServedApp

SITE_A, SITE_B = "0750001A", "0750002B"
SCOPES = frozenset({"requests:read", "offboard:write", "logout:write"})
ROLES = [
    ConsoleRole(claim="memberOf", value="helpdesk-a", scopes=SCOPES, sites=frozenset({SITE_A})),
    ConsoleRole(claim="roles", value="helpdesk-a", scopes=SCOPES, sites=frozenset({SITE_A})),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, RedisServer, ServedApp, ServedApp]]:
    idp = ServedApp(oidc_provider.create_app()).start()
    cas_server = ServedApp(cas.create_app()).start()
    redis = RedisServer().start()
    sso = ConsoleSso(
        oidc=OidcLogin(issuer=idp.url, client_id="console", client_secret="console-secret-1"),
        cas=CasLogin(server_url=f"{cas_server.url}/cas", label="ENT (CAS)"),
        roles=ROLES,
    )
    try:
        with live_orchestrator(
            redis, console_sso=sso, phase1_timeout_s=60, sso_timeout_s=60, preview_wait_s=0.5
        ) as url:
            register = {"secret": "console-secret-1", "redirect_uris": [f"{url}/ui/login/oidc"]}
            httpx.put(f"{idp.url}/_sim/clients/console", json=register).raise_for_status()
            httpx.put(
                f"{cas_server.url}/_sim/users/claire/attributes", json={"memberOf": ["helpdesk-a"]}
            ).raise_for_status()
            httpx.put(
                f"{idp.url}/_sim/users/dana/claims", json={"roles": ["helpdesk-a"]}
            ).raise_for_status()
            yield url, redis, idp, cas_server
    finally:
        redis.cleanup()
        idp.stop()
        cas_server.stop()


def api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def offboard(url: str, user: str, site: str, at: datetime | None = None) -> str:
    body: dict[str, object] = {"subject": {"user_id": user, "site": site}}
    if at is not None:
        body["effective_at"] = at.isoformat()
    with api(url) as client:
        resp = client.post("/v1/offboardings", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["request_id"])


async def partial_logout(url: str, redis: Redis, user: str) -> str:
    """A logout of Microsoft 365 whose step failed (403): `partial`."""
    with api(url) as client:
        body = {"subject": {"user_id": user, "site": SITE_A}, "targets": ["m365"]}
        rid = str(client.post("/v1/logouts", json=body).json()["request_id"])
    subject = Subject(user_id=user, site=SITE_A)
    report = RevocationCompleted(
        request_id=uuid.UUID(rid),
        subject=subject,
        service="m365",
        steps=(workers.failed("revoke_sessions"),),
    )
    await publish(redis, streams.REVOCATION_COMPLETED, report)

    async def at_sso() -> bool:
        with api(url) as client:
            return client.get(f"/v1/requests/{rid}").json()["status"] == "sso_logout"

    await until(at_sso)
    await workers.sso_report(redis, uuid.UUID(rid), subject)
    return rid


async def submit(page: Page, selector: str) -> None:
    page.events.clear()
    await page.eval(f"document.querySelector({selector!r}).submit()")
    await page.wait(lambda: any(e.get("method") == "Page.loadEventFired" for e in page.events))


async def fill(page: Page, values: dict[str, str]) -> None:
    for name, value in values.items():
        await page.eval(f"document.querySelector('[name={name}]').value = {value!r}")


async def click(page: Page, selector: str) -> None:
    page.events.clear()
    await page.eval(f"document.querySelector({selector!r}).click()")
    await page.wait(lambda: any(e.get("method") == "Page.loadEventFired" for e in page.events))


async def test_cas_helpdesk_previews_offboards_cancels_and_retries_in_french(
    stack: tuple[str, RedisServer, ServedApp, ServedApp], tmp_path: Path
) -> None:
    url, redis_server, _idp, _cas = stack
    redis = Redis.from_url(redis_server.url)
    mine = offboard(url, "alice", SITE_A)
    theirs = offboard(url, "bob", SITE_B)
    later = offboard(url, "carol", SITE_A, datetime.now(UTC) + timedelta(days=3))
    failed = await partial_logout(url, redis, "erin")
    async with browser(tmp_path / "fr") as page:
        await page.goto(f"{url}/ui/")
        await page.wait_text("Se connecter avec ENT (CAS)")
        await page.screenshot(SHOTS / "console-fr-login.png")
        await click(page, 'a[href^="/ui/login/cas/start"]')
        await page.wait_text("Connexion CAS")
        await fill(page, {"username": "claire", "password": "pw"})
        await submit(page, "form")
        listing = await page.wait_text("cas:claire")
        await page.screenshot(SHOTS / "console-fr-list.png")
        assert mine[:8] in listing and later[:8] in listing and theirs[:8] not in listing
        # Preview, then offboard.
        await page.goto(f"{url}/ui/offboard")
        await fill(page, {"user_id": "frank"})
        await submit(page, "form.action")
        preview = await page.wait_text("Rien n'a été modifié")
        await page.screenshot(SHOTS / "console-fr-preview.png")
        assert "Toutes les sessions ENT (CAS) fermées en dernier" in preview
        with api(url) as client:
            before = client.get("/v1/requests", params={"subject": "frank"}).json()["items"]
        assert before == []
        await submit(page, "form.confirm")
        started = await page.wait_text("frank")
        assert "Demandé par" in started or "cas:claire" in started
        with api(url) as client:
            items = client.get("/v1/requests", params={"subject": "frank"}).json()["items"]
        assert [i["requested_by"] for i in items] == ["cas:claire"]
        # Cancel the scheduled one: a confirmation first.
        await page.goto(f"{url}/ui/requests/{later}")
        await submit(page, f'form[action="/ui/requests/{later}/cancel"]')
        await page.wait_text("La désactivation programmée n'aura pas lieu")
        await page.screenshot(SHOTS / "console-fr-cancel-confirm.png")
        await submit(page, "form.confirm")
        await page.wait_text("Annulée")
        # Retry the failed step of a finished request.
        await page.goto(f"{url}/ui/requests/{failed}")
        await submit(page, f'form[action="/ui/requests/{failed}/retry"]')
        await page.wait_text("Relancer maintenant")
        await submit(page, "form.confirm")
        await page.screenshot(SHOTS / "console-fr-retried.png")
        # Log a user out, from the list: a confirmation first.
        await page.goto(f"{url}/ui/")
        await fill(page, {"user_id": "zoe"})
        await submit(page, 'form[action="/ui/logouts"]')
        await page.wait_text("Déconnecter zoe de tous les services maintenant ?")
        await submit(page, "form.confirm")
        await page.wait_text("zoe")
        # The other school's request is not there for this person.
        await page.goto(f"{url}/ui/requests/{theirs}")
        refused = await page.text()
        assert '"status":404' in refused and "bob" not in refused
    with api(url) as client:
        assert client.get(f"/v1/requests/{later}").json()["status"] == "cancelled"
        view = client.get(f"/v1/requests/{failed}").json()
        zoe = client.get("/v1/requests", params={"subject": "zoe"}).json()["items"]
    assert [(i["kind"], i["requested_by"], i["subject"]["site"]) for i in zoe] == [
        ("logout", "cas:claire", SITE_A)
    ]
    retry = [t for t in view["timeline"] if t["event"] == "retry_requested"]
    assert retry and retry[0]["detail"] == "cas:claire"
    await redis.aclose()


async def test_oidc_helpdesk_signs_in_in_english(
    stack: tuple[str, RedisServer, ServedApp, ServedApp], tmp_path: Path
) -> None:
    url = stack[0]
    mine = offboard(url, "gina", SITE_A)
    theirs = offboard(url, "hugo", SITE_B)
    async with browser(tmp_path / "en", lang="en-GB,en") as page:
        await page.goto(f"{url}/ui/")
        await page.wait_text("Sign in with OpenID Connect")
        await page.screenshot(SHOTS / "console-en-login.png")
        await click(page, 'a[href^="/ui/login/oidc/start"]')
        await page.wait_text("Fournisseur d'identité")
        await fill(page, {"username": "dana", "password": "pw"})
        await submit(page, "form")
        listing = await page.wait_text("oidc:dana")
        await page.screenshot(SHOTS / "console-en-list.png")
        assert mine[:8] in listing and theirs[:8] not in listing
        await page.goto(f"{url}/ui/offboard")
        await fill(page, {"user_id": "ivan"})
        await submit(page, "form.action")
        await page.wait_text("Nothing has been changed")
        await page.screenshot(SHOTS / "console-en-preview.png")
        assert await page.axe() == []
