"""The administrator's station view and actions, end to end in-process: the real
orchestrator app over HTTP (ASGI), agents with in-memory sessions, a real redis-server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from sortie_core.presence import PresenceRecord, write_presence
from sortie_orchestrator.adapters.presence import PresenceIndex
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from sortie_testkit.waiting import wait_until_async
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.bootstrap import SERVICE, make_build
from sortie_workstation.settings import AgentSettings
from tests.orchestrator.conftest import READ_ONLY
from tests.support.workers import running_worker

PROBLEM = "application/problem+json"


@contextlib.asynccontextmanager
async def agents(
    redis_server: RedisServer, machines: dict[str, tuple[str | None, FakeSessions]]
) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for host, (group, backend) in machines.items():
            settings = fast(AgentSettings, redis_server.url, host=host, group=group, heartbeat_s=30)
            await stack.enter_async_context(
                running_worker(SERVICE, settings, make_build(settings, backend=backend))
            )
        yield


def fake(*sessions: tuple[int, str]) -> FakeSessions:
    backend = FakeSessions()
    for sid, user in sessions:
        backend.open(sid, user, station=f"st{sid}")
    return backend


async def until(client: httpx.AsyncClient, path: str, done: Any, timeout_s: float = 10) -> Any:
    async def body_when_done() -> Any:
        body = (await client.get(path)).json()
        return body if done(body) else None

    return await wait_until_async(body_when_done, timeout_s, 0.05, f"{path} done")


def finished(body: dict[str, Any]) -> bool:
    return body.get("status") in ("completed", "partial", "failed")


async def test_list_then_end_a_classroom_and_suspend_one_user(
    client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    room = {
        "pc-b12-1": ("b12", fake((1, "alice"), (2, "bob"))),
        "pc-b12-2": ("b12", fake((4, "carol"))),
        "pc-lab": (None, fake((1, "bob"), (3, "dave"))),
    }
    async with agents(redis_server, room):
        listing = await until(client, "/v1/workstations", lambda b: len(b["items"]) == 3)
        assert [(h["host"], h["group"], h["live"]) for h in listing["items"]] == [
            ("pc-b12-1", "b12", True),
            ("pc-b12-2", "b12", True),
            ("pc-lab", None, True),
        ]
        assert listing["online"] == 3
        assert listing["items"][0]["sessions"] == [
            {"id": "1", "user": "alice", "state": "active", "station": "st1"},
            {"id": "2", "user": "bob", "state": "active", "station": "st2"},
        ]
        only = (await client.get("/v1/workstations", params={"group": "b12"})).json()
        assert [h["host"] for h in only["items"]] == ["pc-b12-1", "pc-b12-2"]

        # The end of the day in room B12: every session there ends, pc-lab is untouched.
        resp = await client.post("/v1/workstations/sessions:end", json={"group": "b12"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["hosts"] == ["pc-b12-1", "pc-b12-2"]
        request = await until(client, resp.headers["Location"], finished)
        assert (request["kind"], request["status"]) == ("workstation_admin", "completed")
        assert request["subject"]["user_id"] == "group:b12"
        assert request["sso"] is None
        steps = {
            name: [(s["action"], s["outcome"], s["detail"]) for s in svc["steps"]]
            for name, svc in request["services"].items()
        }
        assert steps == {
            "workstation:pc-b12-1": [("logoff", "succeeded", "logoff of sessions 1, 2")],
            "workstation:pc-b12-2": [("logoff", "succeeded", "logoff of session 4")],
        }
        assert all(
            s["duration_seconds"] >= 0 for s in request["services"]["workstation:pc-b12-1"]["steps"]
        )
        assert room["pc-b12-1"][1].sessions == {} and room["pc-b12-2"][1].sessions == {}
        assert room["pc-lab"][1].calls == []

        # Suspend bob on pc-lab: his session is disconnected, dave's stays.
        resp = await client.post(
            "/v1/workstations/sessions:suspend", json={"host": "pc-lab", "user": "bob"}
        )
        assert resp.status_code == 202, resp.text
        request = await until(client, resp.headers["Location"], finished)
        [step] = request["services"]["workstation:pc-lab"]["steps"]
        assert (step["action"], step["outcome"]) == ("disconnect", "succeeded")
        assert room["pc-lab"][1].calls == [("disconnect", 1)]

        # End one session by id: the request is filed under the session's user.
        resp = await client.post(
            "/v1/workstations/sessions:end", json={"host": "pc-lab", "session_id": "3"}
        )
        request = await until(client, resp.headers["Location"], finished)
        assert request["subject"]["user_id"] == "dave"
        assert request["status"] == "completed"
        assert list(room["pc-lab"][1].sessions) == [1]


async def test_bad_orders_are_refused_and_change_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await write_presence(
        redis, PresenceRecord("pc-1", "0.1.0", frozenset({"alice"}), time.time(), 30.0)
    )
    await redis.sadd("sortie:agents", "pc-1")
    cases = [
        ({"host": "pc-1", "group": "b12"}, 422, "exactly one of"),
        ({}, 422, "exactly one of"),
        ({"host": "pc-1", "user": "bob", "session_id": "2"}, 422, "session_id"),
        ({"group": "b12", "session_id": "2"}, 422, "session_id"),
        ({"host": "pc-1", "extra": 1}, 422, "extra"),
        ({"host": "../etc"}, 422, "host"),
        ({"host": "pc-404"}, 404, "no agent has reported host 'pc-404'"),
        ({"group": "b99"}, 404, "no host in group 'b99'"),
    ]
    for body, status, detail in cases:
        resp = await client.post("/v1/workstations/sessions:end", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert detail in resp.json()["detail"], resp.json()
    resp = await client.post("/v1/workstations/sessions:suspend", json={"host": "pc-1"})
    assert resp.status_code == 422 and "needs a `user`" in resp.json()["detail"]
    denied = await client.get("/v1/workstations", headers={"Authorization": f"Bearer {READ_ONLY}"})
    assert denied.status_code == 403 and denied.headers["content-type"].startswith(PROBLEM)
    assert (await client.get("/v1/workstations", headers={"Authorization": ""})).status_code == 401
    assert await redis.xlen("workstation.pc-1") == 0
    assert (await client.get("/v1/requests")).json()["items"] == []


async def test_lapsed_host_is_unreachable_at_once(client: httpx.AsyncClient, redis: Redis) -> None:
    """A logout and an admin order both report a host whose heartbeat lapsed as
    `unreachable` when accepted, without waiting for the deadline. The logout is still
    queued for the lapsed host (its agent ends the session when it is back); the
    administrator's order is not."""
    now = time.time()
    await write_presence(
        redis, PresenceRecord("pc-old", "0.1.0", frozenset({"alice"}), now - 600, 10.0, "b12")
    )
    await write_presence(
        redis, PresenceRecord("pc-new", "0.1.0", frozenset({"alice"}), now, 10.0, "b12")
    )
    orch = client._transport.app  # type: ignore[attr-defined]
    for host in ("pc-old", "pc-new"):
        await orch.state.deps.presence.refresh(host)
    resp = await client.post(
        "/v1/logouts", json={"subject": {"user_id": "alice"}, "targets": ["workstations"]}
    )
    assert resp.status_code == 202
    view = (await client.get(resp.headers["Location"])).json()
    old = view["services"]["workstation:pc-old"]
    assert old["state"] == "unreachable"
    assert [(s["action"], s["outcome"]) for s in old["steps"]] == [("logoff", "unreachable")]
    assert view["services"]["workstation:pc-new"]["state"] == "pending"
    assert await redis.xlen("workstation.pc-old") == 1
    assert await redis.xlen("workstation.pc-new") == 1

    resp = await client.post("/v1/workstations/sessions:end", json={"group": "b12"})
    view = (await client.get(resp.headers["Location"])).json()
    assert view["services"]["workstation:pc-old"]["state"] == "unreachable"
    assert view["services"]["workstation:pc-new"]["state"] == "pending"
    # pc-new never answers (no agent runs): the deadline ends the order, nothing done.
    view = await until(client, resp.headers["Location"], finished)
    assert view["status"] == "failed"
    assert view["services"]["workstation:pc-new"]["state"] == "timed_out"
    assert await redis.xlen("workstation.pc-old") == 1


async def test_an_order_repeated_with_its_idempotency_key_is_sent_once(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await write_presence(
        redis, PresenceRecord("pc-1", "0.1.0", frozenset({"bob"}), time.time(), 30.0)
    )
    await redis.sadd("sortie:agents", "pc-1")
    headers = {"Idempotency-Key": "end-pc-1-2026-11-21"}
    first = await client.post(
        "/v1/workstations/sessions:end", json={"host": "pc-1"}, headers=headers
    )
    again = await client.post(
        "/v1/workstations/sessions:end", json={"host": "pc-1"}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["request_id"] == again.json()["request_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await redis.xlen("workstation.pc-1") == 1
    view = (await client.get(first.headers["Location"])).json()
    assert (view["kind"], view["subject"]["user_id"], view["requested_by"]) == (
        "workstation_admin",
        "host:pc-1",
        "all",
    )


async def test_group_index_follows_a_host_that_changes_room(redis: Redis) -> None:
    index = PresenceIndex(redis)
    for group in ("b12", "b13", None):
        await write_presence(
            redis, PresenceRecord("pc-9", "0.1.0", frozenset(), time.time(), 10.0, group)
        )
        await index.refresh("pc-9")
        for name in ("b12", "b13"):
            hosts = [h for h, _r in await index.records(name)]
            assert hosts == (["pc-9"] if name == group else []), (group, name)
    assert [h for h, _r in await index.records()] == ["pc-9"]
    # A record that expired keeps its host in its last group (then reported unreachable).
    await write_presence(
        redis, PresenceRecord("pc-9", "0.1.0", frozenset(), time.time(), 10.0, "b12")
    )
    await index.refresh("pc-9")
    await redis.delete("sortie:agent:pc-9")
    await index.refresh("pc-9")
    assert await index.records("b12") == [("pc-9", None)]


async def test_the_station_list_is_paged_by_host_name(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    index = PresenceIndex(redis)
    now = time.time()
    for i in range(7):
        host = f"pc-{i:02d}"
        await write_presence(
            redis,
            PresenceRecord(
                host=host, version="t", users=frozenset(), heartbeat_at=now, heartbeat_s=30
            ),
        )
        await index.refresh(host)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["after"] = cursor
        body = (await client.get("/v1/workstations", params=params)).json()
        pages += 1
        assert body["total"] == 7
        seen += [item["host"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"pc-{i:02d}" for i in range(7)]
    bad = await client.get("/v1/workstations", params={"limit": 0})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
