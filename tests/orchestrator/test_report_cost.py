"""A report costs two round trips: the load, then one script that compare-and-sets,
publishes what follows and acknowledges the report's entry."""

from __future__ import annotations

from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, ensure_groups, publish
from sortie_core.events import Target
from sortie_orchestrator import handlers
from tests.core.roundtrips import counted
from tests.orchestrator.test_replicas import ALICE, deps_for, report


async def test_a_report_is_loaded_then_committed_and_acknowledged_in_one_script(
    redis: Redis, redis_server
) -> None:
    deps = deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(
        deps,
        subject=ALICE,
        reason="t",
        targets=[Target.M365, Target.ENT],
        sso_session=None,
        idempotency_key=None,
        principal="t",
    )
    stream, group = streams.REVOCATION_COMPLETED, streams.GROUP_ORCHESTRATOR
    await ensure_groups(redis, [(stream, group)])
    trips = []
    for service in ("m365", "ent"):  # the first one also loads the script
        entry_id = await publish(redis, stream, report(rid, service))
        await redis.xreadgroup(group, "o1", {stream: ">"})
        delivery = Delivery(stream, group, entry_id, 1)
        with counted(deps.store.redis) as made:
            await handlers.on_revocation(deps, report(rid, service), delivery)
        trips.append(made)
        assert delivery.acked
    await deps.store.redis.aclose()
    assert trips[1] == ["HMGET", "EVALSHA"]
    assert (await redis.xpending(stream, group))["pending"] == 0
    # Both reported: the SSO logout went out with the second commit.
    assert await redis.xlen(streams.SSO_LOGOUT_REQUESTED) == 1


async def test_an_accepted_logout_costs_at_most_two_round_trips(orchestrator, client) -> None:
    """The intake (issue 12 item 2): the presence read for the user's hosts, then the one
    create script that stores the request and publishes its commands."""
    redis = orchestrator.state.wiring.redis
    trips = []
    for n in range(2):  # the first one also loads the script
        body = {"subject": {"user_id": f"cost{n}", "upn": f"cost{n}@example.org"}}
        with counted(redis) as made:
            resp = await client.post("/v1/logouts", json=body)
        assert resp.status_code == 202, resp.text
        trips.append(made)
    assert len(trips[1]) <= 2, trips[1]
    assert "EVALSHA" in trips[1]
