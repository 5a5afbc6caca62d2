"""Delivery defects that must not come back, each against a real redis-server: a
backlog, copies of one event, undecodable and oversized entries, versions, unknown
requests, lost groups."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Consumers, Delivery, Subscription, entry_fields, publish
from sortie_core.events import DeadLettered, LogoutRequested, RevocationCompleted
from sortie_testkit.waiting import wait_until_async

from .roundtrips import counted
from .test_broker import GROUP, STREAM, _pending_is, logout, running

REQ = "test:req"


async def _deadletters(redis: Redis) -> list[DeadLettered]:
    entries = await redis.xrange(streams.DEADLETTER)
    return [DeadLettered.model_validate_json(e[1][b"data"]) for e in entries]


async def test_a_backlog_older_than_the_claim_time_is_handled_once_each(redis, redis_server):
    """2 slots, 30 entries of 60 ms: the last waits ~0.9 s, far past the 200 ms claim
    idle time. Every entry is handled once, on its first delivery."""
    seen: Counter[uuid.UUID] = Counter()
    deliveries: list[int] = []
    most_pending = 0

    async def handler(event: LogoutRequested, delivery: Delivery) -> None:
        nonlocal most_pending
        seen[event.event_id] += 1
        deliveries.append(delivery.deliveries)
        most_pending = max(most_pending, int((await redis.xpending(STREAM, GROUP))["pending"]))
        await asyncio.sleep(0.06)

    events = [logout() for _ in range(30)]
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for event in events:
        await publish(redis, STREAM, event)
    async with running(redis_server.url, handler, concurrency=2, claim_idle_ms=200):
        await wait_until_async(lambda: _pending_is(redis, 0), 20)
    assert set(seen) == {e.event_id for e in events}
    assert max(seen.values()) == 1
    assert set(deliveries) == {1}
    # Read only what can be worked on: 2 running plus one batch of at most 2 waiting.
    assert most_pending <= 4


async def test_two_copies_of_one_event_added_back_to_back_run_once(redis, redis_server):
    calls: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event.event_id)
        await asyncio.sleep(0.2)

    event = logout()
    async with running(redis_server.url, handler):
        await publish(redis, STREAM, event)
        await publish(redis, STREAM, event)
        await wait_until_async(lambda: _pending_is(redis, 0))
        await wait_until_async(lambda: bool(calls))
    assert calls == [event.event_id]


async def test_a_failed_copy_lets_the_next_delivery_run(redis, redis_server):
    attempts: list[int] = []

    async def handler(event: LogoutRequested, delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        if delivery.deliveries == 1:
            raise RuntimeError("transient")

    async with running(redis_server.url, handler):
        await publish(redis, STREAM, logout())
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert attempts == [1, 2]


async def test_invalid_utf8_is_dead_lettered_escaped_and_the_next_entry_handled(
    redis, redis_server
):
    calls: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event.event_id)

    good = logout()
    async with running(redis_server.url, handler):
        await redis.xadd(STREAM, {"type": "logout.requested", "data": b'{"x": "\xff\xfe"}'})
        await publish(redis, STREAM, good)
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert calls == [good.event_id]
    [record] = await _deadletters(redis)
    assert record.reason == "invalid_message"
    assert "\\xff\\xfe" in record.data


async def test_an_undecodable_entry_past_the_limit_is_dead_lettered_for_that(redis, redis_server):
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry_id = await redis.xadd(STREAM, {"data": b"\xff"})
    # Delivered three times already, to consumers that died.
    await redis.xreadgroup(GROUP, "dead", {STREAM: ">"})
    for _ in range(2):
        await redis.xclaim(STREAM, GROUP, "dead", 0, [entry_id])

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        raise AssertionError("never handled")

    async with running(redis_server.url, handler, max_deliveries=2, claim_idle_ms=100):
        await wait_until_async(lambda: _pending_is(redis, 0))
    [record] = await _deadletters(redis)
    assert record.reason == "max_deliveries" and record.data == "\\xff"


async def test_an_unknown_version_is_dead_lettered_with_its_reason(redis, redis_server):
    calls: list[object] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event)

    fields = entry_fields(logout())
    doc = json.loads(fields["data"])
    async with running(redis_server.url, handler):
        await redis.xadd(STREAM, {**fields, "data": json.dumps({**doc, "version": 99})})
        await redis.xadd(STREAM, {**fields, "data": json.dumps({**doc, "version": 2, "x": []})})
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert calls == []
    records = await _deadletters(redis)
    assert [r.reason for r in records] == ["unsupported_version"] * 2
    assert "99" in records[0].detail


async def test_an_oversized_entry_is_dead_lettered_too_large(redis, redis_server):
    calls: list[object] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event)

    fields = entry_fields(logout())
    async with running(redis_server.url, handler) as consumers:
        consumers.path.max_entry_bytes = 100_000
        await redis.xadd(STREAM, {**fields, "pad": "x" * 200_000})
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert calls == []
    [record] = await _deadletters(redis)
    assert record.reason == "too_large"


async def test_a_command_for_a_request_never_accepted_is_refused(redis, redis_server):
    calls: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event.request_id)

    known, unknown = logout(), logout()
    await redis.set(f"{REQ}:{known.request_id}", 1)
    async with running(redis_server.url, handler, request_key=lambda e: f"{REQ}:{e.request_id}"):
        await publish(redis, STREAM, unknown)
        await publish(redis, STREAM, known)
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert calls == [known.request_id]
    [record] = await _deadletters(redis)
    assert record.reason == "unknown_request" and str(unknown.request_id) in record.detail


async def test_the_result_is_published_with_the_acknowledgement(redis, redis_server):
    async def handler(event: LogoutRequested, _d: Delivery) -> RevocationCompleted:
        return RevocationCompleted(
            request_id=event.request_id, subject=event.subject, service="m365", steps=()
        )

    event = logout()
    async with running(redis_server.url, handler, publishes=streams.REVOCATION_COMPLETED):
        await publish(redis, STREAM, event)
        await wait_until_async(lambda: _pending_is(redis, 0))
    [(_id, fields)] = await redis.xrange(streams.REVOCATION_COMPLETED)
    assert fields[b"request_id"].decode() == str(event.request_id)


async def test_consumers_carry_on_after_redis_lost_its_data(redis, redis_server):
    seen: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        seen.append(event.event_id)

    before, after = logout(), logout()
    async with running(redis_server.url, handler) as consumers:
        await publish(redis, STREAM, before)
        await wait_until_async(lambda: len(seen) == 1)
        await redis.flushall()  # a restart without its data, or a failover to an empty one
        await wait_until_async(lambda: consumers.recreated_groups > 0, 15)
        await publish(redis, STREAM, after)
        await wait_until_async(lambda: len(seen) == 2, 15)
        assert consumers.healthy()
    assert seen == [before.event_id, after.event_id]


async def test_a_worker_message_costs_two_round_trips(redis, redis_server):
    """The request check and the de-duplication script in one pipeline, then one MULTI
    with the result, the done mark and the acknowledgement. Nothing started: only the
    path runs."""

    async def handler(event: LogoutRequested, _d: Delivery) -> RevocationCompleted:
        return RevocationCompleted(
            request_id=event.request_id, subject=event.subject, service="m365", steps=()
        )

    sub = Subscription(
        STREAM,
        GROUP,
        handler,
        (LogoutRequested,),
        publishes=streams.REVOCATION_COMPLETED,
        request_key=lambda e: f"{REQ}:{e.request_id}",
    )
    client = Redis.from_url(redis_server.url)
    path = Consumers(RedisBroker(redis_server.url), client, "c1", [])
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    trips: list[list[str]] = []
    for event in (logout(), logout()):  # the first one loads the script
        await redis.set(f"{REQ}:{event.request_id}", 1)
        entry_id = await publish(redis, STREAM, event)
        await redis.xreadgroup(GROUP, "c1", {STREAM: ">"})
        with counted(client) as made:
            await path.process(sub, entry_id, entry_fields(event), 1)
        trips.append(made)
    await client.aclose()
    assert trips[1] == ["pipeline", "pipeline"]
    assert await _pending_is(redis, 0)
    assert await redis.xlen(streams.REVOCATION_COMPLETED) == 2
