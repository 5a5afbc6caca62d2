from __future__ import annotations

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
    assert deleted.text == tgt
    assert (await client.delete(f"/cas/v1/tickets/{tgt}")).status_code == 404
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


async def test_delete_unknown_tgt_is_404_and_not_an_event(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/cas/v1/tickets/TGT-404")).status_code == 404
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
    sessions = {s["authenticated_principal"]: s for s in body["activeSsoSessions"]}
    assert set(sessions) == {"alice", "bob"}
    alice = sessions["alice"]
    assert alice["ticket_granting_ticket"] == DEMO_TGT
    assert ISO_US.match(alice["authentication_date"])
    assert alice["authenticated_services"] == {
        st["ticket"]: {"id": st["service"]} for st in demo_service_tickets(ENTAPPS)
    }
    assert sessions["bob"]["authenticated_services"] == {}


async def test_actuator_destroys_every_sso_session_of_a_user(client: httpx.AsyncClient) -> None:
    second = await login(client, "alice")
    bob = await login(client, "bob")
    response = await client.delete("/cas/actuator/ssoSessions/users/alice")
    assert response.status_code == 200
    assert response.json() == {
        "status": 200,
        "ticketGrantingTickets": {DEMO_TGT: "destroyed", second: "destroyed"},
    }
    assert [t["tgt"] for t in (await client.get("/_sim/tickets")).json()] == [bob]
    again = await client.delete("/cas/actuator/ssoSessions/users/alice")
    assert again.status_code == 200
    assert again.json() == {"status": 200, "ticketGrantingTickets": {}}
    events = (await client.get("/_sim/events")).json()
    assert [e["what"] for e in events] == ["sso_sessions_deleted", "sso_sessions_deleted"]
    assert events[0]["tgts"] == [DEMO_TGT, second]
    assert events[1]["tgt"] is None
    assert events[0]["monotonic"] <= events[1]["monotonic"]


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
        assert ok.json()["ticketGrantingTickets"] == {DEMO_TGT: "destroyed"}
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
