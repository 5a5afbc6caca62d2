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
