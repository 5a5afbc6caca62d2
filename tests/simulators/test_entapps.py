from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sortie_simulators import entapps
from sortie_simulators.demo import ALICE, DEMO_SERVICE_TICKETS
from sortie_simulators.logout_messages import BACKCHANNEL_LOGOUT_EVENT, logout_request_xml
from tests.simulators.asgi import ISO_US, asgi_client

BEARER = {"Authorization": "Bearer app-token"}
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
  xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="x" Version="2.0" IssueInstant="now">
<saml:NameID>&lol2;</saml:NameID><samlp:SessionIndex>ST-1-esper-alice-demo-sortie</samlp:SessionIndex>
</samlp:LogoutRequest>"""


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(entapps.create_app(seed_demo=True)) as c:
        yield c


def slo_form(ticket: str, name_id: str = "alice") -> dict[str, str]:
    xml = logout_request_xml(ticket, name_id, "LR-1", "2026-11-21T10:00:00Z")
    return {"logoutRequest": xml}


def b64url(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def logout_token(**claims: Any) -> str:
    payload = {
        "iss": "https://sortie.test",
        "aud": "ism",
        "iat": 1,
        "jti": "j-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return f"{b64url({'alg': 'RS256', 'typ': 'logout+jwt'})}.{b64url(payload)}.c2ln"


async def sessions(client: httpx.AsyncClient, app: str) -> list[dict[str, Any]]:
    response = await client.get(f"/_sim/apps/{app}/sessions")
    assert response.status_code == 200
    return response.json()


async def received(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await client.get("/_sim/received")).json()


async def test_demo_seed_has_apps_and_alice_sessions(client: httpx.AsyncClient) -> None:
    apps = (await client.get("/_sim/apps")).json()
    assert [(a["name"], a["protocol"]) for a in apps] == [
        ("esper", "cas_slo"),
        ("escada", "cas_slo"),
        ("mer", "http"),
        ("ism", "oidc_bcl"),
    ]
    assert all(a["sessions"] == 1 and a["down"] is False for a in apps)
    esper = await sessions(client, "esper")
    assert [(s["user"], s["ticket"]) for s in esper] == [("alice", DEMO_SERVICE_TICKETS["esper"])]
    assert (await sessions(client, "mer"))[0]["user"] == ALICE.username


# -- CAS single logout -------------------------------------------------------------------------
@pytest.mark.parametrize(("app", "path"), [("esper", "/esper/"), ("escada", "/escada/cas/slo")])
async def test_cas_slo_ends_the_session_of_the_ticket(
    client: httpx.AsyncClient, app: str, path: str
) -> None:
    ticket = DEMO_SERVICE_TICKETS[app]
    response = await client.post(path, data=slo_form(ticket))
    assert response.status_code == 200
    assert await sessions(client, app) == []
    [record] = await received(client)
    assert record["app"] == app
    assert record["protocol"] == "cas_slo"
    assert record["user"] == "alice"
    assert record["session_index"] == ticket
    assert record["accepted"] is True
    assert record["sessions_ended"] == 1
    assert ISO_US.match(record["at"])


async def test_cas_slo_without_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.post("/esper", data=slo_form(DEMO_SERVICE_TICKETS["esper"]))
    assert response.status_code == 200
    assert await sessions(client, "esper") == []


async def test_cas_slo_for_an_unknown_ticket_is_200_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/esper/", data=slo_form("ST-999-unknown"))
    assert response.status_code == 200
    assert len(await sessions(client, "esper")) == 1
    [record] = await received(client)
    assert record["accepted"] is True
    assert record["sessions_ended"] == 0
    assert "no session" in record["reason"]


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({}, "missing"),
        ({"logoutRequest": ""}, "missing"),
        ({"logoutRequest": "<samlp:LogoutRequest"}, "malformed"),
        ({"logoutRequest": "not xml at all"}, "malformed"),
        (
            {"logoutRequest": "<LogoutRequest><SessionIndex>ST-1</SessionIndex></LogoutRequest>"},
            "expected samlp:LogoutRequest",
        ),
        (
            {
                "logoutRequest": '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0'
                ':protocol"><samlp:SessionIndex> </samlp:SessionIndex></samlp:LogoutRequest>'
            },
            "SessionIndex",
        ),
        ({"logoutRequest": BILLION_LAUGHS}, "DOCTYPE"),
    ],
)
async def test_malformed_or_dangerous_logout_requests_are_400(
    client: httpx.AsyncClient, form: dict[str, str], reason: str
) -> None:
    response = await client.post("/esper/", data=form)
    assert response.status_code == 400
    assert reason in response.json()["error_description"]
    assert len(await sessions(client, "esper")) == 1
    [record] = await received(client)
    assert record["accepted"] is False
    assert reason in record["reason"]


async def test_doctype_in_any_case_is_refused(client: httpx.AsyncClient) -> None:
    xml = slo_form(DEMO_SERVICE_TICKETS["esper"])["logoutRequest"]
    sneaky = '<!doctype x SYSTEM "file:///etc/passwd">' + xml
    response = await client.post("/esper/", data={"logoutRequest": sneaky})
    assert response.status_code == 400
    assert len(await sessions(client, "esper")) == 1


async def test_slo_body_must_be_a_form(client: httpx.AsyncClient) -> None:
    response = await client.post("/esper/", json={"logoutRequest": "x"})
    assert response.status_code == 415


# -- OIDC back-channel logout --------------------------------------------------------------
async def test_backchannel_logout_ends_the_sessions_of_sub(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/apps/ism/sessions", json={"user": "alice", "sid": "sid-2"})
    await client.post("/_sim/apps/ism/sessions", json={"user": "bob"})
    token = logout_token(sub="alice")
    response = await client.post("/ism/oidc/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert [s["user"] for s in await sessions(client, "ism")] == ["bob"]
    [record] = await received(client)
    assert (record["protocol"], record["user"], record["sessions_ended"]) == (
        "oidc_bcl",
        "alice",
        2,
    )


async def test_backchannel_logout_by_sid_only(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/apps/ism/sessions", json={"user": "carol", "sid": "sid-c"})
    token = logout_token(sid="sid-c")
    response = await client.post("/ism/oidc/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert [s["user"] for s in await sessions(client, "ism")] == ["alice"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (logout_token(sub="alice", nonce="n-1"), "nonce"),
        (logout_token(sub="alice", events=None), "events"),
        (logout_token(sub="alice", events={"http://other/event": {}}), "events"),
        (logout_token(sub="alice", events=[BACKCHANNEL_LOGOUT_EVENT]), "events"),
        (logout_token(), "sub or sid"),
        ("not-a-jwt", "compact JWS"),
        ("a.b", "compact JWS"),
        ("!!!.%%%.sig", "base64url"),
        (f"{b64url({'alg': 'none'})}.{base64.urlsafe_b64encode(b'[1]').decode()}.x", "object"),
    ],
)
async def test_invalid_logout_tokens_are_400(
    client: httpx.AsyncClient, token: str, reason: str
) -> None:
    response = await client.post("/ism/oidc/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert reason in response.json()["error_description"]
    assert len(await sessions(client, "ism")) == 1
    assert (await received(client))[0]["accepted"] is False


async def test_backchannel_logout_needs_the_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/ism/oidc/backchannel-logout", data={"other": "x"})
    assert response.status_code == 400


# -- HTTP logout API -------------------------------------------------------------------------
async def test_http_logout_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/mer/api/logout", json={"user": "alice"})
    assert response.status_code == 401
    assert len(await sessions(client, "mer")) == 1
    assert (await received(client))[0]["reason"] == "no bearer token"


async def test_http_logout_ends_the_user_sessions(client: httpx.AsyncClient) -> None:
    response = await client.post("/mer/api/logout", json={"user": "alice"}, headers=BEARER)
    assert response.status_code == 204
    assert await sessions(client, "mer") == []
    again = await client.post("/mer/api/logout", json={"user": "alice"}, headers=BEARER)
    assert again.status_code == 204
    records = await received(client)
    assert [(r["accepted"], r["sessions_ended"]) for r in records] == [(True, 1), (True, 0)]
    assert records[1]["reason"] == "no session for this user"
    assert records[0]["monotonic"] <= records[1]["monotonic"]


@pytest.mark.parametrize("body", [b"{}", b"[]", b'{"user": ""}', b'{"user": 3}', b"nope"])
async def test_http_logout_bad_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    headers = {**BEARER, "Content-Type": "application/json"}
    response = await client.post("/mer/api/logout", content=body, headers=headers)
    assert response.status_code == 400
    assert len(await sessions(client, "mer")) == 1


# -- routing, failures, latency --------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/mer/", {"data": {"logoutRequest": "x"}}),  # mer speaks http, not cas_slo
        ("/esper/api/logout", {"json": {"user": "alice"}, "headers": BEARER}),
        ("/esper/oidc/backchannel-logout", {"data": {"logout_token": "x"}}),
        ("/nowhere/", {"data": {"logoutRequest": "x"}}),
    ],
)
async def test_wrong_protocol_or_unknown_app_is_404(
    client: httpx.AsyncClient, path: str, kwargs: dict[str, Any]
) -> None:
    response = await client.post(path, **kwargs)
    assert response.status_code == 404
    assert (await received(client))[0]["accepted"] is False
    assert all(a["sessions"] == 1 for a in (await client.get("/_sim/apps")).json())


async def test_a_failing_app_answers_503_until_it_recovers() -> None:
    app = entapps.create_app(seed_demo=True, fail_apps=["esper"])
    async with asgi_client(app) as client:
        form = slo_form(DEMO_SERVICE_TICKETS["esper"])
        assert (await client.post("/esper/", data=form)).status_code == 503
        assert len(await sessions(client, "esper")) == 1
        other = await client.post("/escada/", data=slo_form(DEMO_SERVICE_TICKETS["escada"]))
        assert other.status_code == 200
        apps = {a["name"]: a["down"] for a in (await client.get("/_sim/apps")).json()}
        assert apps["esper"] is True
        assert apps["escada"] is False

        config = await client.post("/_sim/config", json={"fail_apps": []})
        assert config.json() == {"latency_ms": 0.0, "fail_apps": []}
        assert (await client.post("/esper/", data=form)).status_code == 200
        assert [r["accepted"] for r in await received(client)] == [False, True, True]


async def test_latency_applies_to_app_endpoints() -> None:
    app = entapps.create_app(apps=[("pronote", "http")], latency_ms=120)
    async with asgi_client(app) as client:
        started = time.monotonic()
        response = await client.post("/pronote/api/logout", json={"user": "x"}, headers=BEARER)
        assert response.status_code == 204
        assert time.monotonic() - started >= 0.12


# -- simulator admin ---------------------------------------------------------------------------
async def test_apps_from_options_and_admin() -> None:
    app = entapps.create_app(apps=[("pronote", "cas_slo")])
    async with asgi_client(app) as client:
        assert (await client.get("/_sim/apps")).json() == [
            {"name": "pronote", "protocol": "cas_slo", "down": False, "sessions": 0}
        ]
        created = await client.post("/_sim/apps", json={"name": "per", "protocol": "oidc_bcl"})
        assert created.status_code == 201
        assert (
            await client.post("/_sim/apps", json={"name": "per", "protocol": "http"})
        ).status_code == 409
        bad = await client.post("/_sim/apps", json={"name": "Bad Name", "protocol": "http"})
        assert bad.status_code == 422
        assert (
            await client.post("/_sim/apps", json={"name": "x", "protocol": "saml"})
        ).status_code == 422

        session = await client.post("/_sim/apps/pronote/sessions", json={"user": "eve"})
        assert session.status_code == 201
        ticket = session.json()["ticket"]
        assert ticket.startswith("ST-")
        dup = await client.post("/_sim/apps/pronote/sessions", json={"user": "x", "ticket": ticket})
        assert dup.status_code == 409
        assert (await client.get("/_sim/apps/nope/sessions")).status_code == 404
        assert (
            await client.post("/_sim/apps/nope/sessions", json={"user": "x"})
        ).status_code == 404

        assert (await client.post("/pronote/", data=slo_form(ticket, "eve"))).status_code == 200
        assert await sessions(client, "pronote") == []


def test_invalid_app_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        entapps.create_app(apps=[("x", "saml")])
    with pytest.raises(ValueError, match="app name"):
        entapps.create_app(apps=[("_sim", "http")])
    with pytest.raises(ValueError, match="already exists"):
        entapps.create_app(apps=[("esper", "http")], seed_demo=True)
