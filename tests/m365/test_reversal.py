"""A reversal through Redis and the Graph simulator, the m365-worker as bootstrap wires it:
the Temporary Access Pass reaches the report sealed, and its value is in no log line and
no Redis key (streams included)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from sortie_core import sealed, streams
from sortie_core.events import Outcome, ReversalRequested, RevocationCompleted, Subject, utcnow
from sortie_m365.bootstrap import SERVICE, make_build
from sortie_testkit.redis_server import RedisServer
from tests.m365.conftest import ALICE, GraphSim
from tests.m365.test_integration import ALICE_ID, settings_for
from tests.support.workers import command, running_worker, wait_for_events


async def everything_in(redis: Redis) -> bytes:
    """Every value of every key, whatever its type."""
    found: list[bytes] = []
    async for key in redis.scan_iter("*"):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            found.append(await redis.get(key))
        elif kind == "hash":
            found += [k + v for k, v in (await redis.hgetall(key)).items()]  # type: ignore[misc]
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                found += [k + v for k, v in fields.items()]
        elif kind == "list":
            found += await redis.lrange(key, 0, -1)  # type: ignore[misc]
        elif kind in ("set", "zset"):
            found += list(
                await redis.smembers(key) if kind == "set" else await redis.zrange(key, 0, -1)
            )  # type: ignore[misc]
        found.append(key)
    return b"\n".join(found)


async def test_the_pass_is_sealed_and_never_in_logs_or_redis(
    redis: Redis,
    redis_server: RedisServer,
    graph_sim: GraphSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    graph_sim.sim.users[ALICE_ID].account_enabled = False
    private, public = sealed.new_keypair()
    event = ReversalRequested(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="alice", upn=ALICE),
        reverses=uuid.uuid4(),
        restore={"block_sign_in": {"account_enabled": True}},
        tap_public_key=public,
        deadline=utcnow() + timedelta(seconds=30),
    )
    settings = settings_for(redis_server, graph_sim.url)
    await command(redis, streams.REVERSAL_REQUESTED, event)
    async with running_worker(SERVICE, settings, make_build(settings)):
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
    assert isinstance(done, RevocationCompleted) and done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("restore_block_sign_in", Outcome.SUCCEEDED),
        ("issue_temporary_access_pass", Outcome.SUCCEEDED),
    ]
    assert graph_sim.sim.users[ALICE_ID].account_enabled is True
    [issued] = graph_sim.sim.tenant.issued_passes
    blob = done.steps[1].sealed
    assert blob is not None and sealed.unseal(private, blob) == issued
    assert issued.encode() not in await everything_in(redis)
    assert blob.encode() in await everything_in(redis)  # the scan does see the report
    assert issued not in caplog.text
    assert "reversal" in caplog.text  # the worker did log its work
