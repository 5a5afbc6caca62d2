"""The user's logout page and the status page in a real headless Chromium, over a real
orchestrator and Redis whose workers the test plays (workers.py beside it), so that
each report arrives while the page is watched: a French logout shows each step, the SSO
session last, then the closing message, live by server-sent events and without JavaScript
by refreshing; an altered or expired link is a plain 404; the status page in French and
English; axe-core finds no serious or critical violation; nothing overflows at 390 px.

Screenshots go to $SORTIE_SCREENSHOTS (default /tmp/sortie-screenshots)."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sortie_core.events import Subject
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.statuspage import workers
from tests.orchestrator.statuspage.cdp import Page, browser
from tests.support.live import READER, TOKEN, live_orchestrator

SHOTS = Path(os.environ.get("SORTIE_SCREENSHOTS", "/tmp/sortie-screenshots"))
ENT = "https://ent.example.org/"
REGISTRY = Path(__file__).resolve().parents[3] / "deploy/ent-registry.yaml"
SERVICES = ("m365", "ent", "workstation:pc-101")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, RedisServer]]:
    redis = RedisServer().start()
    try:
        with live_orchestrator(
            redis,
            phase1_timeout_s=60,
            sso_timeout_s=60,
            ent_public_url=ENT,
            ent_registry_path=REGISTRY,
        ) as url:
            yield url, redis
    finally:
        redis.cleanup()


@pytest.fixture
async def redis(server: tuple[str, RedisServer]) -> AsyncIterator[Redis]:
    client = Redis.from_url(server[1].url)
    yield client
    await client.aclose()


@pytest.fixture
def url(server: tuple[str, RedisServer]) -> str:
    return server[0]


async def start_logout(url: str, redis: Redis, user: str) -> tuple[uuid.UUID, Subject, str]:
    """A user at pc-101 clicks "Se déconnecter"; the ENT calls Sortie."""
    await workers.sits_at(redis, "pc-101", user)
    async with httpx.AsyncClient(base_url=url) as http:
        await until(lambda: redis.sismember(f"sortie:hosts:{user}", "pc-101"))
        body = {"subject": {"user_id": user, "upn": f"{user}@lycee.example"}}
        resp = await http.post(
            "/v1/logouts", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    progress = accepted["progress_url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/logout/[A-Za-z0-9_-]{32}", progress)
    subject = Subject(user_id=user, upn=f"{user}@lycee.example")
    return uuid.UUID(accepted["request_id"]), subject, progress


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20) -> None:
    await wait_until_async(check, timeout, 0.05)


async def status_of(url: str, rid: uuid.UUID) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get(f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {TOKEN}"})
    return str(resp.json()["status"])


async def sso_phase(url: str, redis: Redis, rid: uuid.UUID, subject: Subject) -> None:
    """The SSO logout is reported once the orchestrator asked for it (phase 2)."""

    async def asked() -> bool:
        return await status_of(url, rid) == "sso_logout"

    await until(asked)
    await workers.sso_report(redis, rid, subject)


async def finish(url: str, redis: Redis, rid: uuid.UUID, subject: Subject) -> None:
    for service in SERVICES:
        await workers.report(redis, rid, subject, service)
    await sso_phase(url, redis, rid, subject)


def steps_in_order(html: str) -> list[str]:
    return re.findall(r'<span class="what">([^<]+)</span>', html)


async def check_small_screen(page: Page, name: str) -> Path:
    await page.width(390, 844)
    overflow = await page.eval("document.documentElement.scrollWidth")
    assert overflow <= 390, f"{name} is {overflow} px wide at 390 px"
    shot = await page.screenshot(SHOTS / f"{name}-390.png")
    await page.width(1280)
    return shot


async def check_accessible(page: Page) -> None:
    serious = await page.axe()
    assert serious == [], serious


def loads(page: Page) -> list[dict[str, Any]]:
    return [e for e in page.events if e.get("method") == "Page.loadEventFired"]


def line(label: str, state: str) -> str:
    return f'<span class="what">{label}</span> <span class="state">{state}</span>'


def assert_nothing_of_the_user(html: str, rid: uuid.UUID, subject: Subject) -> None:
    for secret in (subject.user_id, subject.upn or "-", str(rid)):
        assert secret not in html


async def test_logout_page_follows_a_french_logout_live(
    url: str, redis: Redis, tmp_path: Path
) -> None:
    rid, subject, progress = await start_logout(url, redis, "alice")
    async with browser(tmp_path / "fr") as page:
        await page.goto(progress)
        first = await page.text()
        await page.screenshot(SHOTS / "logout-fr-running.png")
        await workers.report(redis, rid, subject, "m365")
        await page.wait_text(line("Déconnexion de Microsoft 365", "Fait"))
        await workers.report(redis, rid, subject, "ent")
        await page.wait_text(line("Déconnexion de l'application Esper", "Fait"))
        await workers.report(redis, rid, subject, "workstation:pc-101")
        # Phase 2: the SSO session, closed last.
        waiting = await page.wait_text(line("Session ENT (CAS) fermée en dernier", "En cours…"))
        await sso_phase(url, redis, rid, subject)
        html = await page.wait_text("Vous êtes déconnecté de tous les services.")
        await page.screenshot(SHOTS / "logout-fr-done.png")
        # One load: every change came by the server-sent events.
        assert len(loads(page)) == 1
    assert (
        'data-events="/logout/' in first
        and line("Déconnexion de Microsoft 365", "En cours…") in first
    )
    assert line("Session ENT (CAS) fermée en dernier", "En dernier, après les autres") in first
    assert "Fermez le navigateur" not in waiting
    assert '<html lang="fr">' in html
    # The closing sentence is said once (the heading says the sign-out is over).
    assert html.count("Vous êtes déconnecté de tous les services") == 1
    assert "<h1>Déconnexion terminée</h1>" in html
    steps = steps_in_order(html)
    assert steps == [
        "Déconnexion de l'application Esper",
        "Déconnexion de l'application Ressources MER",
        "Déconnexion de Microsoft 365",
        "Fermeture des navigateurs sur pc-101",
        "Fermeture de la session sur pc-101",
        "Session ENT (CAS) fermée en dernier",
    ]
    assert html.count('<li class="l-done">') == len(steps)
    assert "Fermez le navigateur." in html
    assert f'href="{ENT}"' in html
    assert_nothing_of_the_user(html, rid, subject)


async def test_logout_page_without_javascript(url: str, redis: Redis, tmp_path: Path) -> None:
    rid, subject, progress = await start_logout(url, redis, "bob")
    async with browser(tmp_path / "nojs", javascript=False) as page:
        await page.goto(progress)
        first = await page.text()
        await finish(url, redis, rid, subject)
        html = await page.wait_text("Vous êtes déconnecté de tous les services.")
        # Without JavaScript the <noscript> refresh brought the end: the page loaded again
        # (its DOM can be read a moment before its load event).
        await page.wait(lambda: len(loads(page)) >= 2, timeout=10)
        await page.screenshot(SHOTS / "logout-fr-nojs.png")
    assert line("Déconnexion de Microsoft 365", "En cours…") in first
    # Once finished it refreshes no more.
    assert 'http-equiv="refresh"' in first and 'http-equiv="refresh"' not in html
    steps = steps_in_order(html)
    assert "Déconnexion de Microsoft 365" in steps and "Fermeture de la session sur pc-101" in steps
    assert steps[-1] == "Session ENT (CAS) fermée en dernier"
    assert "Fermez le navigateur." in html
    assert_nothing_of_the_user(html, rid, subject)


async def test_logout_page_in_both_languages_is_accessible_and_fits_a_phone(
    url: str, redis: Redis, tmp_path: Path
) -> None:
    rid, subject, progress = await start_logout(url, redis, "carol")
    await finish(url, redis, rid, subject)
    for lang, closing in (
        ("fr-FR,fr", "Vous êtes déconnecté"),
        ("en-GB,en", "You are signed"),
    ):
        short = lang[:2]
        async with browser(tmp_path / short, lang=lang) as page:
            await page.goto(progress)
            html = await page.wait_text(closing)
            assert f'<html lang="{short}">' in html
            await page.screenshot(SHOTS / f"logout-{short}.png")
            await check_small_screen(page, f"logout-{short}")
            await check_accessible(page)
    assert "Close the browser." in html and "Signing out of Microsoft 365" in html


async def test_altered_or_expired_links_are_a_plain_404(
    url: str, redis: Redis, tmp_path: Path
) -> None:
    _rid, _subject, progress = await start_logout(url, redis, "dave")
    token = progress.rsplit("/", 1)[1]
    altered = progress[:-1] + ("A" if progress[-1] != "A" else "B")
    async with httpx.AsyncClient() as http:
        assert (await http.get(progress)).status_code == 200
        for bad in (altered, progress + "x", progress.rsplit("/", 1)[0] + "/" + "x" * 32):
            resp = await http.get(bad)
            assert resp.status_code == 404, bad
            assert resp.headers["content-type"].startswith("text/html")
            assert "Ce lien a expiré ou n'est pas valide." in resp.text
            assert "dave" not in resp.text
            assert (await http.get(bad + "/events")).status_code == 404
    key = "sortie:progress:" + hashlib.sha256(token.encode()).hexdigest()
    assert 0 < await redis.ttl(key) <= 900
    await redis.pexpire(key, 1)

    async def gone() -> bool:
        return not await redis.exists(key)

    await until(gone)
    async with browser(tmp_path / "gone") as page:
        await page.goto(progress)
        html = await page.text()
        await page.screenshot(SHOTS / "logout-expired-fr.png")
        await check_accessible(page)
    assert "Page introuvable" in html and "Ce lien a expiré" in html


async def test_status_page_in_french_and_english(url: str, redis: Redis, tmp_path: Path) -> None:
    rid, subject, _progress = await start_logout(url, redis, "erin")
    await finish(url, redis, rid, subject)

    async def done() -> bool:
        return await status_of(url, rid) == "completed"

    await until(done)
    expect = {
        "fr-FR,fr": (
            "Demandes récentes",
            "Déconnexion de Microsoft 365",
            "Vérifié",
            "Accusé de réception",
            "Étapes",
        ),
        "en-GB,en": (
            "Recent requests",
            "Signing out of Microsoft 365",
            "Verified",
            "Acknowledged",
            "Steps",
        ),
    }
    for lang, (title, m365, verified, acked, steps) in expect.items():
        short = lang[:2]
        async with browser(tmp_path / f"ui-{short}", lang=lang) as page:
            await page.goto(f"{url}/ui/login#token={READER}")
            listing = await page.wait_text(title)
            assert f'<html lang="{short}">' in listing
            await page.screenshot(SHOTS / f"status-list-{short}.png")
            await check_small_screen(page, f"status-list-{short}")
            await check_accessible(page)
            await page.goto(f"{url}/ui/requests/{rid}")
            html = await page.wait_text(steps)
            assert m365 in html and verified in html and acked in html
            # Dates in Europe/Paris, the offset said.
            assert re.search(r"\(UTC\+0[12]:00\)", html)
            await page.screenshot(SHOTS / f"status-request-{short}.png")
            await check_small_screen(page, f"status-request-{short}")
            await check_accessible(page)


async def test_the_page_returns_to_the_ent_by_itself_when_configured() -> None:
    """Not on a shared station (no advice to close the browser): after the end, the page
    goes back to the ENT's public page, the configured one, after the configured delay."""
    server = RedisServer().start()
    client = Redis.from_url(server.url)
    try:
        with live_orchestrator(
            server, phase1_timeout_s=60, ent_public_url=ENT, logout_return_after_s=7
        ) as base:
            body = {"subject": {"user_id": "fanny"}, "targets": ["m365", "ent"]}
            async with httpx.AsyncClient(base_url=base) as http:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                accepted = (await http.post("/v1/logouts", json=body, headers=auth)).json()
                rid, subject = uuid.UUID(accepted["request_id"]), Subject(user_id="fanny")
                running = (await http.get(accepted["progress_url"])).text
                for service in ("m365", "ent"):
                    await workers.report(client, rid, subject, service)
                await sso_phase(base, client, rid, subject)

                async def done() -> bool:
                    return await status_of(base, rid) == "completed"

                await until(done)
                finished = (await http.get(accepted["progress_url"])).text
    finally:
        await client.aclose()
        server.cleanup()
    assert f'content="7;url={ENT}"' not in running
    assert f'<meta http-equiv="refresh" content="7;url={ENT}">' in finished
    assert "Fermez le navigateur" not in finished
