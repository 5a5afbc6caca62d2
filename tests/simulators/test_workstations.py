from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sortie_simulators import workstations
from sortie_simulators.demo import ALICE, BOB
from tests.simulators.asgi import ISO_US, asgi_client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(workstations.create_app(seed_demo=True)) as c:
        yield c


async def host_sessions(client: httpx.AsyncClient, host: str) -> list[dict]:
    response = await client.get(f"/hosts/{host}/sessions")
    assert response.status_code == 200
    return response.json()


async def test_demo_seed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/hosts")).json() == ["pc-101", "pc-102"]
    [alice] = await host_sessions(client, ALICE.host)
    assert alice["user"] == ALICE.windows_account
    assert alice["state"] == "active"
    assert alice["station"] == "console"
    assert isinstance(alice["id"], int)
    assert ISO_US.match(alice["logon_time"])
    assert [s["user"] for s in await host_sessions(client, BOB.host)] == [BOB.windows_account]
    assert (await client.get("/_sim/events")).json() == []  # seeding is not an action


async def test_hosts_option_creates_empty_hosts() -> None:
    async with asgi_client(workstations.create_app(hosts=3)) as client:
        assert (await client.get("/hosts")).json() == ["pc-0001", "pc-0002", "pc-0003"]
        assert await host_sessions(client, "pc-0002") == []
    assert workstations.host_names(12_000)[-1] == "pc-12000"


async def test_unknown_host_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/hosts/pc-999/sessions")).status_code == 404
    assert (await client.post("/hosts/pc-999/sessions/1/logoff")).status_code == 404


async def test_logon_creates_the_host_and_picks_a_station(client: httpx.AsyncClient) -> None:
    first = await client.post("/hosts/pc-201/sessions", json={"user": "carol"})
    assert first.status_code == 201
    assert first.json()["station"] == "console"
    second = await client.post("/hosts/pc-201/sessions", json={"user": "dave"})
    assert second.json()["station"] == "rdp-tcp#1"
    assert second.json()["id"] != first.json()["id"]
    third = await client.post(
        "/hosts/pc-201/sessions", json={"user": "erin", "station": "rdp-tcp#7", "state": "locked"}
    )
    assert (third.json()["station"], third.json()["state"]) == ("rdp-tcp#7", "locked")
    assert "pc-201" in (await client.get("/hosts")).json()
    assert [s["user"] for s in await host_sessions(client, "pc-201")] == ["carol", "dave", "erin"]
    bad = await client.post("/hosts/pc-201/sessions", json={"user": "x", "state": "asleep"})
    assert bad.status_code == 422
    bad_host = await client.post("/hosts/bad.host/sessions", json={"user": "x"})
    assert bad_host.status_code == 422


@pytest.mark.parametrize(("action", "state"), [("disconnect", "disconnected"), ("lock", "locked")])
async def test_disconnect_and_lock_change_the_state(
    client: httpx.AsyncClient, action: str, state: str
) -> None:
    [session] = await host_sessions(client, ALICE.host)
    response = await client.post(f"/hosts/{ALICE.host}/sessions/{session['id']}/{action}")
    assert response.status_code == 204
    [after] = await host_sessions(client, ALICE.host)
    assert after["state"] == state
    [event] = (await client.get("/_sim/events")).json()
    assert (event["host"], event["action"], event["user"]) == (ALICE.host, action, "alice")
    assert event["session_id"] == session["id"]
    assert ISO_US.match(event["at"])


async def test_logoff_removes_the_session(client: httpx.AsyncClient) -> None:
    [session] = await host_sessions(client, ALICE.host)
    url = f"/hosts/{ALICE.host}/sessions/{session['id']}/logoff"
    assert (await client.post(url)).status_code == 204
    assert await host_sessions(client, ALICE.host) == []
    assert (await client.post(url)).status_code == 404
    assert len(await host_sessions(client, BOB.host)) == 1
    events = (await client.get("/_sim/events")).json()
    assert [e["action"] for e in events] == ["logoff"]


@pytest.mark.parametrize("action", ["logoff", "disconnect", "lock"])
async def test_actions_on_unknown_sessions_are_404(client: httpx.AsyncClient, action: str) -> None:
    response = await client.post(f"/hosts/{ALICE.host}/sessions/4242/{action}")
    assert response.status_code == 404
    assert (await host_sessions(client, ALICE.host))[0]["state"] == "active"


async def test_admin_lists_sessions_across_hosts_and_logs_logons(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/hosts/pc-301/sessions", json={"user": "alice"})
    mine = (await client.get("/_sim/sessions", params={"user": "alice"})).json()
    assert sorted(s["host"] for s in mine) == ["pc-101", "pc-301"]
    assert len((await client.get("/_sim/sessions")).json()) == 3
    events = (await client.get("/_sim/events")).json()
    assert [(e["action"], e["host"]) for e in events] == [("logon", "pc-301")]
    created = await client.post("/_sim/hosts", json={"name": "pc-400"})
    assert created.json() == {"name": "pc-400", "sessions": 0}
    assert "pc-400" in (await client.get("/hosts")).json()
    config = await client.post("/_sim/config", json={"latency_ms": 5})
    assert config.json() == {"latency_ms": 5.0}
