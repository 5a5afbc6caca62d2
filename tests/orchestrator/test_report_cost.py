"""A report costs one round trip when this process wrote the request last (the
compare-and-set proves its copy current), two otherwise: the load, then one script that
compare-and-sets, publishes what follows and acknowledges the report's entry. Both are
shared with whatever else the process sends at that moment (sortie_core.coalesce)."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, ensure_groups, publish
from sortie_core.events import Target
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.saga_store import DEADLINES
from sortie_orchestrator.app import create_app
from tests.core.roundtrips import Trips, counted
from tests.orchestrator.conftest import TOKEN, settings_for
from tests.orchestrator.test_replicas import ALICE, deps_for, report

# A logout of ALICE, by "t", with nothing else said.
LOGOUT: dict[str, Any] = {
    "subject": ALICE,
    "reason": "t",
    "sso_session": None,
    "idempotency_key": None,
    "principal": "t",
}


async def test_a_report_is_loaded_then_committed_and_acknowledged_in_one_script(
    redis: Redis, redis_server
) -> None:
    deps = deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(deps, targets=[Target.M365, Target.ENT], **LOGOUT)
    stream, group = streams.REVOCATION_COMPLETED, streams.GROUP_ORCHESTRATOR
    await ensure_groups(redis, [(stream, group)])
    trips: list[Trips] = []
    for service in ("m365", "ent"):  # the first one also loads the script
        entry_id = await publish(redis, stream, report(rid, service))
        await redis.xreadgroup(group, "o1", {stream: ">"})
        delivery = Delivery(stream, group, entry_id, 1)
        with counted(deps.store.redis) as made:
            await handlers.on_revocation(deps, report(rid, service), delivery)
        trips.append(made)
        assert delivery.acked
    await deps.store.redis.aclose()
    # This process accepted the request and committed the first report: no read back.
    assert trips[1] == ["pipeline"] and trips[1].pipelines == [["EVALSHA"]]
    assert (await redis.xpending(stream, group))["pending"] == 0
    # Both reported: the SSO logout went out with the second commit.
    assert await redis.xlen(streams.SSO_LOGOUT_REQUESTED) == 1


async def test_an_accepted_logout_costs_at_most_two_round_trips(redis, redis_server) -> None:
    """The intake: the presence read for the user's hosts, then the one create script
    that stores the request and publishes its commands. The app runs without its
    background loops (gauges, deadlines), whose commands would share the client."""
    app = create_app(settings_for(redis_server))
    wiring = app.state.wiring
    trips: list[Trips] = []
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        for n in range(2):  # the first one also loads the script
            body = {"subject": {"user_id": f"cost{n}", "upn": f"cost{n}@example.org"}}
            with counted(wiring.redis) as made:
                resp = await c.post("/v1/logouts", json=body)
            assert resp.status_code == 202, resp.text
            trips.append(made)
    await wiring.redis.aclose()
    assert len(trips[1]) <= 2, trips[1]
    assert "EVALSHA" in trips[1].commands()


async def test_a_deadline_not_due_costs_one_read_and_a_vanished_request_is_dropped(
    redis: Redis, redis_server
) -> None:
    """fire_deadline judges on the state its compare-and-set loaded: no second read to
    learn what it saw; a request gone (expired) leaves the deadline index at once."""
    deps = deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(deps, targets=[Target.M365], **LOGOUT)
    with counted(deps.store.redis) as made:
        await handlers.fire_deadline(deps, str(rid))
    # Not due on the doc this process wrote, and not on Redis's either (read once).
    assert made.commands() == ["HMGET"] and len(made) == 1
    await redis.zadd(DEADLINES, {"gone": 1})
    with counted(deps.store.redis) as made:
        await handlers.fire_deadline(deps, "gone")
    await deps.store.redis.aclose()
    assert made.commands() == ["ZREM", "HMGET"] and len(made) == 2
    assert await redis.zscore(DEADLINES, "gone") is None


async def test_a_refused_cancel_reads_the_request_once(redis, redis_server) -> None:
    """DELETE /v1/requests/{id} of a running request: one read, which both checks the
    caller may see it and says why it cannot be cancelled."""
    app = create_app(settings_for(redis_server))
    wiring = app.state.wiring
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        body = {"subject": {"user_id": "cancel1", "upn": "cancel1@example.org"}}
        rid = (await c.post("/v1/logouts", json=body)).json()["request_id"]
        with counted(wiring.redis) as made:
            resp = await c.delete(f"/v1/requests/{rid}")
    await wiring.redis.aclose()
    assert resp.status_code == 409, resp.text
    assert "this one is in_progress" in resp.json()["detail"]
    assert made.commands() == ["HMGET"] and len(made) == 1
