"""Redis Cluster groundwork (issue 19, item 2), on a real 3-primary cluster started here:
an outbox lives in its request's slot, so a script can write the request and its outgoing
entries atomically; the relay moves every entry to its stream (another slot) exactly once,
with two relays racing and after a relay died between the copy and its XACK."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from sortie_core.broker import request_key
from sortie_core.outbox import (
    OUTBOX_SLOTS,
    RELAY_GROUP,
    Relay,
    new_request_id,
    outbox_fields,
    outbox_key,
)

# What an orchestrator script does on Cluster: the request and its outgoing entry, in
# the request's slot, in one step.
ACCEPT = """
redis.call('HSET', KEYS[1], 'doc', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'stream', ARGV[2], 'type', 'logout.requested',
           'event_id', ARGV[3], 'request_id', ARGV[4], 'data', ARGV[1])
return 1
"""


def test_the_outbox_shares_the_requests_slot() -> None:
    for _ in range(200):
        rid = uuid.uuid4()
        assert key_slot(outbox_key(rid).encode()) == key_slot(request_key(rid).encode())
    drawn = new_request_id()
    assert key_slot(str(drawn).encode()) in OUTBOX_SLOTS
    assert outbox_fields("s", {"a": "1"}) == {"stream": "s", "a": "1"}


async def _accept(redis: RedisCluster, rids: list[uuid.UUID], stream: str) -> None:
    script = redis.register_script(ACCEPT)
    for rid in rids:
        await script(
            keys=[request_key(rid), outbox_key(rid)],
            args=["{}", stream, f"ev-{rid}", str(rid)],
        )


async def test_every_entry_reaches_its_stream_exactly_once(cluster_client: RedisCluster) -> None:
    # Drawn ids (polled outboxes) and plain ones (found by discovery), many slots.
    rids = [new_request_id() for _ in range(20)] + [uuid.uuid4() for _ in range(20)]
    await _accept(cluster_client, rids, "logout.requested")
    a, b = Relay(cluster_client, "relay-a"), Relay(cluster_client, "relay-b")
    await asyncio.gather(a.discover(), b.discover())
    moved = sum(await asyncio.gather(a.relay_once(), b.relay_once()))
    moved += await a.relay_once()
    entries: Any = await cluster_client.xrange("logout.requested")
    ids = Counter(fields[b"request_id"].decode() for _, fields in entries)
    assert ids == Counter(str(r) for r in rids)
    assert moved == len(rids)
    for rid in rids:  # nothing left behind
        assert await cluster_client.xlen(outbox_key(rid)) == 0


async def test_a_relay_that_died_before_its_ack_copies_nothing_twice(
    cluster_client: RedisCluster,
) -> None:
    rids = [new_request_id() for _ in range(5)]
    await _accept(cluster_client, rids, "revocation.completed")
    dead = Relay(cluster_client, "relay-dead")
    # It read every entry and copied them, then died before acknowledging any.
    for outbox in {outbox_key(r) for r in rids}:
        await dead.group(outbox)
        read: Any = await cluster_client.xreadgroup(RELAY_GROUP, "relay-dead", {outbox: ">"})
        for _stream, entries in read:
            for entry_id, raw in entries:
                assert await dead.copy(outbox, entry_id, raw) == 1
    assert await cluster_client.xlen("revocation.completed") == 5
    # Another relay claims what the dead one held: acknowledged, not copied again.
    live = Relay(cluster_client, "relay-live", claim_idle_ms=0)
    assert await live.relay_once() == 0
    assert await cluster_client.xlen("revocation.completed") == 5
    for rid in rids:
        assert await cluster_client.xlen(outbox_key(rid)) == 0
