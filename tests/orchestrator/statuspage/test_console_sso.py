"""The helpdesk signs in to the console with the school's CAS and OpenID provider (the
project's simulators, served over HTTP), gets the scopes and sites its roles give, sees
only its sites' requests (the page and the API alike), and its session can be revoked;
every sign-in and action is recorded."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from sortie_core.events import Subject
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.console_store import ConsoleStore
from sortie_orchestrator.app import background, create_app
from sortie_orchestrator.http.ui import sessions
from sortie_orchestrator.http.ui.sso import CasLogin, ConsoleRole, ConsoleSso, OidcLogin
from sortie_orchestrator.settings import TokenSpec
from sortie_simulators import cas, oidc_provider
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.conftest import TOKEN, settings_for
from tests.orchestrator.statuspage.workers import sits_at
from tests.support.stub_http import ServedApp

BASE = "http://orchestrator"
SITE_TOKEN = "site-token-lycee-a-0123456789abcd"
ROLES = [
    ConsoleRole(
        claim="memberOf",
        value="helpdesk-a",
        scopes=frozenset({"requests:read", "offboard:write", "logout:write"}),
        sites=frozenset({"0750001A"}),
    ),
    ConsoleRole(
        claim="memberOf",
        value="viewers-a",
        scopes=frozenset({"requests:read"}),
        sites=frozenset({"0750001A"}),
    ),
    ConsoleRole(
        claim="roles",
        value="sortie-admin",
        scopes=frozenset({"requests:read", "offboard:write", "sessions:admin"}),
    ),
]


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[ServedApp, ServedApp]]:
    clients = {"console": ("console-secret-1", [f"{BASE}/ui/login/oidc"])}
    idp = ServedApp(oidc_provider.create_app(clients=clients)).start()
    cas_server = ServedApp(cas.create_app()).start()
    try:
        yield idp, cas_server
    finally:
        idp.stop()
        cas_server.stop()


@pytest.fixture
async def app(
    redis: Redis, redis_server: RedisServer, providers: tuple[ServedApp, ServedApp]
) -> AsyncIterator[FastAPI]:
    """`redis`: the fixture that empties the server first."""
    idp, cas_server = providers
    sso = ConsoleSso(
        oidc=OidcLogin(issuer=idp.url, client_id="console", client_secret="console-secret-1"),
        cas=CasLogin(server_url=f"{cas_server.url}/cas"),
        roles=ROLES,
    )
    settings = settings_for(redis_server, console_sso=sso)
    tokens = [
        *settings.tokens,
        TokenSpec(
            name="lycee-a",
            token=SITE_TOKEN,
            scopes=frozenset({"requests:read"}),
            sites=frozenset({"0750001A"}),
        ),
    ]
    application = create_app(settings.model_copy(update={"tokens": tokens}))
    async with background(application.state.wiring):
        yield application


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


async def _seed(app: FastAPI) -> dict[str, str]:
    deps: handlers.Deps = app.state.deps
    ids = {}
    for user, site in (("alice", "0750001A"), ("bob", "0750002B")):
        _, rid = await handlers.accept_offboard(
            deps,
            subject=Subject(user_id=user, site=site),
            reason="test",
            requested_by="hr",
            actions=[],
            effective_at=None,
            idempotency_key=None,
            principal="hr",
        )
        ids[user] = str(rid)
    return ids


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def cas_sign_in(browser: httpx.AsyncClient, cas_url: str, user: str) -> httpx.Response:
    start = await browser.get("/ui/login/cas/start", params={"next": "/ui/"})
    assert start.status_code == 303
    async with httpx.AsyncClient() as outside:
        form = await outside.get(start.headers["location"])
        execution = re.search(r'name="execution" value="([^"]+)"', form.text)
        assert execution is not None
        service = _query(start.headers["location"])["service"]
        done = await outside.post(
            f"{cas_url}/cas/login",
            data={
                "service": service,
                "execution": execution[1],
                "username": user,
                "password": "pw",
            },
        )
    assert done.status_code == 302
    back = done.headers["location"]
    assert back.startswith(f"{BASE}/ui/login/cas?")
    return await browser.get(back.removeprefix(BASE))


async def oidc_sign_in(browser: httpx.AsyncClient, user: str) -> httpx.Response:
    start = await browser.get("/ui/login/oidc/start", params={"next": "/ui/"})
    assert start.status_code == 303
    authorize = start.headers["location"]
    query = _query(authorize)
    assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
    async with httpx.AsyncClient() as outside:
        done = await outside.post(authorize, data={"username": user, "password": "pw"})
    assert done.status_code == 302
    return await browser.get(done.headers["location"].removeprefix(BASE))


async def test_cas_helpdesk_sees_only_its_site(
    app: FastAPI, browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp]
) -> None:
    ids = await _seed(app)
    cas_server = providers[1]
    httpx.put(
        f"{cas_server.url}/_sim/users/claire/attributes", json={"memberOf": ["helpdesk-a"]}
    ).raise_for_status()
    signed = await cas_sign_in(browser, cas_server.url, "claire")
    assert signed.status_code == 200 and 'content="0;url=/ui/"' in signed.text
    page = await browser.get("/ui/")
    assert page.status_code == 200 and "cas:claire" in page.text
    assert ids["alice"][:8] in page.text and ids["bob"][:8] not in page.text
    assert (await browser.get(f"/ui/requests/{ids['bob']}")).status_code == 404
    assert (await browser.get(f"/ui/requests/{ids['alice']}")).status_code == 200
    # The same restriction for an API token that carries it.
    api = {"Authorization": f"Bearer {SITE_TOKEN}"}
    listed = (await browser.get("/v1/requests", headers=api)).json()["items"]
    assert {i["request_id"] for i in listed} == {ids["alice"]}
    assert (await browser.get(f"/v1/requests/{ids['bob']}", headers=api)).status_code == 404
    everything = await browser.get("/v1/requests", headers={"Authorization": f"Bearer {TOKEN}"})
    assert len(everything.json()["items"]) == 2
    # No sessions page without sessions:admin.
    assert (await browser.get("/ui/sessions")).status_code == 403


async def test_a_replayed_or_foreign_sign_in_is_refused(
    browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp]
) -> None:
    forged = await browser.get("/ui/login/cas", params={"s": "not-mine", "ticket": "ST-1-x"})
    assert forged.status_code == 401 and "sortie_session" not in forged.headers.get(
        "set-cookie", ""
    )
    nobody = await cas_sign_in(browser, providers[1].url, "stranger")
    assert nobody.status_code == 401  # no role matches


async def test_oidc_admin_signs_in_lists_and_revokes_sessions(
    app: FastAPI, browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp]
) -> None:
    await _seed(app)
    idp = providers[0]
    httpx.put(
        f"{idp.url}/_sim/users/dana/claims", json={"roles": ["sortie-admin"]}
    ).raise_for_status()
    signed = await oidc_sign_in(browser, "dana")
    assert signed.status_code == 200 and "url=/ui/" in signed.text, signed.text
    page = await browser.get("/ui/")
    assert "oidc:dana" in page.text and page.text.count('href="/ui/requests/') == 2
    listing = await browser.get("/ui/sessions")
    assert listing.status_code == 200 and "oidc:dana" in listing.text
    redis = app.state.deps.store.redis
    live = await ConsoleStore(redis).live_sessions()
    assert [s["name"] for s in live] == ["oidc:dana"]
    ask = await browser.post(
        f"/ui/sessions/{live[0]['id']}/revoke", data={"a": "1"}, headers={"Origin": BASE}
    )
    assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
    assert len(await ConsoleStore(redis).live_sessions()) == 1  # nothing before the confirmation
    revoked = await browser.post(
        f"/ui/sessions/{live[0]['id']}/revoke",
        data={"confirm": "yes"},
        headers={"Origin": BASE},
    )
    assert revoked.status_code == 303
    assert (await browser.get("/ui/")).status_code == 303  # back to the sign-in page
    audit = [a["action"] for a in await ConsoleStore(redis).recent_audit()]
    assert audit[:2] == ["revoke_session", "sign_in"]


async def test_stations_page_ends_a_session_after_confirmation(
    app: FastAPI, browser: httpx.AsyncClient, redis: Redis
) -> None:
    await sits_at(redis, "pc-101", "alice")
    # The orchestrator indexes the host on its wake-up.
    await wait_until_async(lambda: redis.sismember("sortie:agents", "pc-101"), what="pc-101")
    same_site = {"Origin": BASE}
    # The break-glass sign-in: an API token (every scope but sessions:admin).
    login = await browser.post(
        "/ui/login", data={"token": TOKEN, "next": "/ui/stations"}, headers=same_site
    )
    assert login.status_code == 303
    page = await browser.get("/ui/stations")
    assert page.status_code == 200 and "pc-101" in page.text and "alice" in page.text
    ask = await browser.post(
        "/ui/stations/pc-101/logoff", data={"user": "alice"}, headers=same_site
    )
    assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
    assert await redis.zcard("sortie:requests") == 0  # nothing before the confirmation
    done = await browser.post(
        "/ui/stations/pc-101/logoff", data={"user": "alice", "confirm": "yes"}, headers=same_site
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/ui/requests/")
    rid = done.headers["location"].rsplit("/", 1)[-1]
    view = await browser.get(f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert view.json()["kind"] == "workstation_admin" and view.json()["requested_by"] == "all"
    audit = await ConsoleStore(redis).recent_audit()
    assert (audit[0]["action"], audit[0]["who"]) == ("logoff", "all")


async def test_console_export_of_a_day_holds_only_the_persons_sites(
    app: FastAPI, browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp]
) -> None:
    ids = await _seed(app)
    cas_server = providers[1]
    httpx.put(
        f"{cas_server.url}/_sim/users/claire/attributes", json={"memberOf": ["helpdesk-a"]}
    ).raise_for_status()
    await cas_sign_in(browser, cas_server.url, "claire")
    today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
    resp = await browser.get("/ui/export", params={"day": today})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["request_id"] for r in rows} == {ids["alice"]}
    assert rows[0]["site"] == "0750001A" and rows[0]["requested_by"] == "hr"
    as_json = await browser.get("/ui/export", params={"day": today, "format": "json"})
    assert [i["request_id"] for i in as_json.json()] == [ids["alice"]]
    bad = await browser.get("/ui/export", params={"day": "yesterday"})
    assert bad.status_code == 422


async def _scheduled(app: FastAPI, user: str) -> str:
    _, rid = await handlers.accept_offboard(
        app.state.deps,
        subject=Subject(user_id=user, site="0750001A"),
        reason="test",
        requested_by="hr",
        actions=[],
        effective_at=datetime.now(UTC) + timedelta(days=3),
        idempotency_key=None,
        principal="hr",
    )
    return str(rid)


async def _cas_person(
    providers: tuple[ServedApp, ServedApp], browser: httpx.AsyncClient, user: str, group: str
) -> None:
    cas_url = providers[1].url
    httpx.put(f"{cas_url}/_sim/users/{user}/attributes", json={"memberOf": [group]})
    assert (await cas_sign_in(browser, cas_url, user)).status_code == 200


async def test_actions_are_refused_without_the_role_and_the_refusal_recorded(
    app: FastAPI, browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp], redis: Redis
) -> None:
    rid = await _scheduled(app, "alice")
    await _cas_person(providers, browser, "victor", "viewers-a")  # requests:read only
    page = await browser.get("/ui/")
    assert page.status_code == 200 and "/ui/offboard" not in page.text
    assert 'action="/ui/logouts"' not in page.text
    detail = await browser.get(f"/ui/requests/{rid}")
    assert f"/ui/requests/{rid}/cancel" not in detail.text
    same_site = {"Origin": BASE}
    attempts = [
        ("/ui/offboard/preview", {"user_id": "bob"}),
        ("/ui/offboard", {"user_id": "bob", "confirm": "yes"}),
        ("/ui/logouts", {"user_id": "bob", "confirm": "yes"}),
        (f"/ui/requests/{rid}/cancel", {"confirm": "yes"}),
    ]
    for path, form in attempts:
        resp = await browser.post(path, data=form, headers=same_site)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert await redis.zcard("sortie:requests") == 1  # nothing was started
    view = await browser.get(f"/v1/requests/{rid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert view.json()["status"] == "scheduled"
    audit = await ConsoleStore(redis).recent_audit()
    refused = [(a["who"], a["target"]) for a in audit if a["action"] == "refused"]
    assert sorted(refused) == sorted(("cas:victor", f"POST {path}") for path, _ in attempts)


async def test_each_action_asks_first_then_records_who(
    app: FastAPI, browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp], redis: Redis
) -> None:
    rid = await _scheduled(app, "alice")
    await _cas_person(providers, browser, "claire", "helpdesk-a")
    same_site = {"Origin": BASE}
    for path, form in (
        (f"/ui/requests/{rid}/cancel", {"a": "1"}),
        ("/ui/logouts", {"user_id": "bob"}),
    ):
        ask = await browser.post(path, data=form, headers=same_site)
        assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text, path
    unconfirmed = await browser.post("/ui/offboard", data={"user_id": "bob"}, headers=same_site)
    assert unconfirmed.status_code == 422
    assert await redis.zcard("sortie:requests") == 1  # nothing before a confirmation
    done = await browser.post(
        f"/ui/requests/{rid}/cancel", data={"confirm": "yes"}, headers=same_site
    )
    assert done.status_code == 303
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await browser.get(f"/v1/requests/{rid}", headers=auth)).json()["status"] == "cancelled"
    again = await browser.post(
        f"/ui/requests/{rid}/cancel", data={"confirm": "yes"}, headers=same_site
    )
    assert again.status_code == 409  # only a scheduled request can be cancelled
    audit = [
        (a["action"], a["who"], a["target"], a["outcome"])
        for a in await ConsoleStore(redis).recent_audit()
    ]
    assert audit[:2] == [
        ("cancel", "cas:claire", rid, "refused"),
        ("cancel", "cas:claire", rid, "ok"),
    ]
    assert ("sign_in", "cas:claire") in [(a[0], a[1]) for a in audit]


async def test_a_console_session_expires_and_is_then_refused(
    browser: httpx.AsyncClient, providers: tuple[ServedApp, ServedApp], redis: Redis
) -> None:
    await _cas_person(providers, browser, "claire", "helpdesk-a")
    assert (await browser.get("/ui/")).status_code == 200
    live = await ConsoleStore(redis).live_sessions()
    assert [s["name"] for s in live] == ["cas:claire"]
    key = sessions.session_key(live[0]["id"])
    assert 8 * 3600 - 60 < await redis.ttl(key) <= 8 * 3600  # 8 hours
    expires = datetime.fromisoformat(live[0]["expires_at"])
    assert timedelta(hours=7, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=8)
    await redis.pexpire(key, 1)

    async def gone() -> bool:
        return not await redis.exists(key)

    await wait_until_async(gone, 2, what="the expired session's key")
    after = await browser.get("/ui/")
    assert after.status_code == 303 and after.headers["location"].startswith("/ui/login")
    refused = await browser.post(
        "/ui/logouts", data={"user_id": "bob", "confirm": "yes"}, headers={"Origin": BASE}
    )
    assert refused.status_code == 401
    assert await ConsoleStore(redis).live_sessions() == []
