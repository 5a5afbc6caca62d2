from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from sortie_simulators import cas
from sortie_simulators.demo import ALICE, DEMO_TGT, demo_service_tickets
from tests.simulators.asgi import ISO_US, asgi_client

ENTAPPS = "http://ent.test:9000"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cas.create_app(seed_demo=True, entapps_url=ENTAPPS)) as c:
        yield c


async def login(client: httpx.AsyncClient, username: str) -> str:
    response = await client.post(
        "/cas/v1/tickets", data={"username": username, "password": "pw-123"}
    )
    assert response.status_code == 201
    return response.text


async def test_rest_login_service_ticket_and_logout(client: httpx.AsyncClient) -> None:
    response = await client.post("/cas/v1/tickets", data={"username": "carol", "password": "x1"})
    assert response.status_code == 201
    tgt = response.text
    assert tgt.startswith("TGT-")
    assert response.headers["Location"] == f"http://sim.test/cas/v1/tickets/{tgt}"
    assert (await client.get(f"/cas/v1/tickets/{tgt}")).status_code == 200

    service = "https://ent.test/pronote/"
    st = await client.post(f"/cas/v1/tickets/{tgt}", data={"service": service})
    assert st.status_code == 200
    assert st.text.startswith("ST-")
    sso = (await client.get("/_sim/users/carol/sso")).json()
    assert sso == {"tgt": tgt, "service_tickets": [{"service": service, "ticket": st.text}]}

    deleted = await client.delete(f"/cas/v1/tickets/{tgt}")
    assert deleted.status_code == 200
    assert deleted.text == ""
    # Like Apereo: 200 again for a TGT that is gone.
    assert (await client.delete(f"/cas/v1/tickets/{tgt}")).status_code == 200
    assert (await client.get(f"/cas/v1/tickets/{tgt}")).status_code == 404
    assert (await client.get("/_sim/users/carol/sso")).status_code == 404
    events = (await client.get("/_sim/events")).json()
    assert [(e["what"], e["username"], e["tgt"]) for e in events] == [("tgt_deleted", "carol", tgt)]
    assert ISO_US.match(events[0]["at"])
    assert isinstance(events[0]["monotonic"], float)


@pytest.mark.parametrize(
    "form", [{"username": "carol"}, {"password": "x"}, {"username": "", "password": "x"}]
)
async def test_login_needs_username_and_password(client: httpx.AsyncClient, form: dict) -> None:
    response = await client.post("/cas/v1/tickets", data=form)
    assert response.status_code == 400
    assert len((await client.get("/_sim/tickets")).json()) == 1  # the demo TGT only


async def test_rest_api_wants_a_form(client: httpx.AsyncClient) -> None:
    response = await client.post("/cas/v1/tickets", json={"username": "a", "password": "b"})
    assert response.status_code == 415


async def test_service_ticket_errors(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/cas/v1/tickets/TGT-nope", data={"service": "https://x/"})
    assert unknown.status_code == 404
    missing = await client.post(f"/cas/v1/tickets/{DEMO_TGT}", data={})
    assert missing.status_code == 400


async def test_delete_unknown_tgt_is_200_and_not_an_event(client: httpx.AsyncClient) -> None:
    # Apereo's TicketGrantingTicketResource answers 200 whatever the TGT.
    response = await client.delete("/cas/v1/tickets/TGT-404")
    assert (response.status_code, response.text) == (200, "")
    assert (await client.get("/_sim/events")).json() == []


async def test_demo_seed_gives_alice_a_tgt_with_one_st_per_cas_app(
    client: httpx.AsyncClient,
) -> None:
    sso = (await client.get(f"/_sim/users/{ALICE.cas_username}/sso")).json()
    assert sso["tgt"] == DEMO_TGT
    assert sso["service_tickets"] == demo_service_tickets(ENTAPPS)
    assert [s["service"] for s in sso["service_tickets"]] == [
        f"{ENTAPPS}/esper/",
        f"{ENTAPPS}/escada/",
    ]
    tickets = (await client.get("/_sim/tickets")).json()
    assert [(t["tgt"], t["user"]) for t in tickets] == [(DEMO_TGT, "alice")]
    assert ISO_US.match(tickets[0]["created_at"])


async def test_sso_admin_returns_the_newest_live_tgt(client: httpx.AsyncClient) -> None:
    newer = await login(client, "alice")
    assert (await client.get("/_sim/users/alice/sso")).json()["tgt"] == newer
    await client.delete(f"/cas/v1/tickets/{newer}")
    assert (await client.get("/_sim/users/alice/sso")).json()["tgt"] == DEMO_TGT


async def test_actuator_lists_sso_sessions(client: httpx.AsyncClient) -> None:
    await login(client, "bob")
    body = (await client.get("/cas/actuator/ssoSessions", params={"type": "ALL"})).json()
    assert set(body) == {"activeSsoSessions", "totalSsoSessions"}
    assert body["totalSsoSessions"] == 2
    sessions = {s["authenticated_principal"]: s for s in body["activeSsoSessions"]}
    assert set(sessions) == {"alice", "bob"}
    alice = sessions["alice"]
    assert list(alice) == [
        "authenticated_principal",
        "authentication_date",
        "authentication_date_formatted",
        "creation_date_formatted",
        "last_used_date_formatted",
        "number_of_uses",
        "ticket_granting_ticket",
        "principal_attributes",
        "authentication_attributes",
        "expiration_policy",
        "remember_me",
        "is_proxied",
        "authenticated_services",
    ]
    assert alice["ticket_granting_ticket"] == DEMO_TGT
    assert alice["number_of_uses"] == 2
    assert ISO_US.match(alice["authentication_date"])
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", alice["creation_date_formatted"]
    )
    services = alice["authenticated_services"]
    assert {t: s["id"] for t, s in services.items()} == {
        st["ticket"]: st["service"] for st in demo_service_tickets(ENTAPPS)
    }
    first = next(iter(services.values()))
    assert first["originalUrl"] == first["id"] and first["principal"] == "alice"
    assert first["@class"].endswith("SimpleWebApplicationServiceImpl")
    assert sessions["bob"]["authenticated_services"] == {}
    direct = (await client.get("/cas/actuator/ssoSessions", params={"type": "DIRECT"})).json()
    assert all("is_proxied" not in s for s in direct["activeSsoSessions"])
    bad = await client.get("/cas/actuator/ssoSessions", params={"type": "SOME"})
    assert bad.status_code == 400


async def test_actuator_lists_the_sessions_of_one_user(client: httpx.AsyncClient) -> None:
    second = await login(client, "alice")
    await login(client, "bob")
    body = (await client.get("/cas/actuator/ssoSessions/users/ALICE")).json()
    # Apereo matches the principal case-insensitively, sorts by TGT id, and counts every
    # session of the CAS in totalSsoSessions.
    tgts = [s["ticket_granting_ticket"] for s in body["activeSsoSessions"]]
    assert tgts == sorted([DEMO_TGT, second])
    assert body["totalSsoSessions"] == 3
    nobody = (await client.get("/cas/actuator/ssoSessions/users/nobody")).json()
    assert nobody == {"activeSsoSessions": [], "totalSsoSessions": 3}
    query = await client.get("/cas/actuator/ssoSessions", params={"username": "bob"})
    assert [s["authenticated_principal"] for s in query.json()["activeSsoSessions"]] == ["bob"]
    paged = await client.get("/cas/actuator/ssoSessions", params={"from": 1, "count": 1})
    assert len(paged.json()["activeSsoSessions"]) == 1


async def test_actuator_destroys_every_sso_session_of_a_user(client: httpx.AsyncClient) -> None:
    second = await login(client, "alice")
    bob = await login(client, "bob")
    response = await client.delete("/cas/actuator/ssoSessions/users/alice")
    assert response.status_code == 200
    assert response.json() == {
        tgt: {"status": 200, "ticketGrantingTicket": tgt, "singleLogoutRequests": []}
        for tgt in (DEMO_TGT, second)
    }
    assert [t["tgt"] for t in (await client.get("/_sim/tickets")).json()] == [bob]
    again = await client.delete("/cas/actuator/ssoSessions/users/alice")
    assert again.status_code == 200
    assert again.json() == {}
    events = (await client.get("/_sim/events")).json()
    assert [e["what"] for e in events] == ["sso_sessions_deleted", "sso_sessions_deleted"]
    assert sorted(events[0]["tgts"]) == sorted([DEMO_TGT, second])
    assert events[1]["tgt"] is None
    assert events[0]["monotonic"] <= events[1]["monotonic"]


async def test_actuator_destroys_one_sso_session(client: httpx.AsyncClient) -> None:
    second = await login(client, "alice")
    response = await client.delete(f"/cas/actuator/ssoSessions/{DEMO_TGT}")
    assert response.json() == {
        "status": 200,
        "ticketGrantingTicket": DEMO_TGT,
        "singleLogoutRequests": [],
    }
    assert [t["tgt"] for t in (await client.get("/_sim/tickets")).json()] == [second]


async def test_a_lying_cas_accepts_deletes_and_keeps_the_sessions(
    client: httpx.AsyncClient,
) -> None:
    config = await client.post("/_sim/config", json={"keep_sessions_on_delete": True})
    assert config.json() == {
        "keep_sessions_on_delete": True,
        "tickets_api_missing": False,
        "down": False,
    }
    assert (await client.delete(f"/cas/v1/tickets/{DEMO_TGT}")).status_code == 200
    users = await client.delete("/cas/actuator/ssoSessions/users/alice")
    assert list(users.json()) == [DEMO_TGT]
    listed = (await client.get("/cas/actuator/ssoSessions/users/alice")).json()
    assert [s["ticket_granting_ticket"] for s in listed["activeSsoSessions"]] == [DEMO_TGT]
    assert (await client.get("/_sim/events")).json() == []


async def test_missing_rest_module_answers_404(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/config", json={"tickets_api_missing": True})
    assert (await client.delete(f"/cas/v1/tickets/{DEMO_TGT}")).status_code == 404
    login = await client.post("/cas/v1/tickets", data={"username": "a", "password": "b"})
    assert login.status_code == 404
    # The actuator is another module: still there.
    listed = (await client.get("/cas/actuator/ssoSessions/users/alice")).json()
    assert len(listed["activeSsoSessions"]) == 1
    assert (await client.get("/_sim/config")).json()["tickets_api_missing"] is True
    refused = await client.post("/_sim/config", json={"other": True})
    assert refused.status_code == 422


async def test_a_cas_that_is_down_answers_503_and_comes_back(client: httpx.AsyncClient) -> None:
    await client.post("/_sim/config", json={"down": True})
    assert (await client.delete(f"/cas/v1/tickets/{DEMO_TGT}")).status_code == 503
    assert (await client.get("/cas/actuator/ssoSessions/users/alice")).status_code == 503
    await client.post("/_sim/config", json={"down": False})
    listed = (await client.get("/cas/actuator/ssoSessions/users/alice")).json()
    assert len(listed["activeSsoSessions"]) == 1  # nothing was lost while it was down


async def test_actuator_basic_auth() -> None:
    app = cas.create_app(seed_demo=True, actuator_user="ops", actuator_password="s3cret")
    async with asgi_client(app) as client:
        url = "/cas/actuator/ssoSessions/users/alice"
        anonymous = await client.delete(url)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert (await client.delete(url, auth=("ops", "wrong"))).status_code == 401
        assert (await client.delete(url, auth=("other", "s3cret"))).status_code == 401
        listing = await client.get("/cas/actuator/ssoSessions", headers={"Authorization": "x"})
        assert listing.status_code == 401
        assert len((await client.get("/_sim/tickets")).json()) == 1

        ok = await client.delete(url, auth=("ops", "s3cret"))
        assert ok.status_code == 200
        assert list(ok.json()) == [DEMO_TGT]
        listed = await client.get("/cas/actuator/ssoSessions", auth=("ops", "s3cret"))
        assert listed.json()["activeSsoSessions"] == []
        # The REST API has no actuator credentials.
        login = await client.post("/cas/v1/tickets", data={"username": "a", "password": "b"})
        assert login.status_code == 201
        assert (await client.get("/_sim/tickets")).json()[0]["user"] == "a"


async def test_actuator_is_open_without_configured_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/cas/actuator/ssoSessions", params={"type": "ALL"})
    assert response.status_code == 200


async def test_admin_creates_a_session_with_service_tickets(client: httpx.AsyncClient) -> None:
    services = ["https://ent.test/a/", "https://ent.test/b/"]
    created = await client.post("/_sim/sessions", json={"username": "dave", "services": services})
    assert created.status_code == 201
    body = created.json()
    assert [st["service"] for st in body["service_tickets"]] == services
    assert all(st["ticket"].startswith("ST-") for st in body["service_tickets"])
    assert (await client.get("/_sim/users/dave/sso")).json() == body
    assert (await client.get(f"/cas/v1/tickets/{body['tgt']}")).status_code == 200
