"""The message path on a real Redis Cluster of three primaries (issue 19): with
`SORTIE_REDIS_CLUSTER=1` a process gets redis-py's `RedisCluster` and FastStream's
`RedisClusterBroker`; an entry whose stream, de-duplication key, request key and result
stream lie in different slots is still handled once, its result published and the entry
acknowledged; a poison entry is dead-lettered with its failed step published."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from faststream.redis import RedisClusterBroker
from pydantic import SecretStr
from redis.asyncio.cluster import RedisCluster

from sortie_core import streams
from sortie_core.broker import (
    Consumers,
    Delivery,
    Subscription,
    command_request_key,
    entry_fields,
)
from sortie_core.events import LogoutRequested, RevocationCompleted
from sortie_core.path import MessagePath
from sortie_core.redis_cluster import InOrder, is_cluster, multi
from sortie_core.runtime import make_broker, redis_client
from sortie_core.settings import ServiceSettings
from sortie_testkit.redis_cluster import RedisClusterGroup
from sortie_testkit.waiting import wait_until_async

from .test_broker import logout

GROUP = "cluster-test"
OUT = streams.REVOCATION_COMPLETED


def test_the_cluster_setting_picks_the_cluster_client_and_broker(
    cluster: RedisClusterGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SORTIE_REDIS_CLUSTER", "1")
    settings = ServiceSettings(redis_url=SecretStr(cluster.url))
    assert settings.redis_cluster is True
    assert is_cluster(redis_client(settings))
    assert isinstance(make_broker(settings), RedisClusterBroker)
    plain = ServiceSettings(redis_url=SecretStr(cluster.url), redis_cluster=False)
    assert not is_cluster(redis_client(plain))
    assert not isinstance(make_broker(plain), RedisClusterBroker)
    with pytest.raises(ValueError, match="exclude each other"):
        ServiceSettings(redis_url=SecretStr(cluster.url), redis_sentinels="127.0.0.1:26379")


def _recording(**options: Any) -> tuple[Subscription, list[uuid.UUID]]:
    """A subscription to logout.requested whose handler records each event it runs and
    reports it on OUT."""
    calls: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> RevocationCompleted:
        calls.append(event.event_id)
        return _report(event)

    sub = Subscription(
        streams.LOGOUT_REQUESTED,
        GROUP,
        handler,  # type: ignore[arg-type]
        (LogoutRequested,),
        publishes=OUT,
        **options,
    )
    return sub, calls


def _report(event: LogoutRequested) -> RevocationCompleted:
    return RevocationCompleted(
        request_id=event.request_id, subject=event.subject, service="m365", steps=()
    )


async def test_an_entry_across_slots_is_handled_once_and_acknowledged(
    cluster_client: RedisCluster,
) -> None:
    sub, calls = _recording(request_key=command_request_key)
    event = logout()
    await cluster_client.hset(command_request_key(event), "v", 1)  # type: ignore[misc]
    await cluster_client.xgroup_create(sub.stream, GROUP, id="0", mkstream=True)
    path = MessagePath(cluster_client, max_deliveries=5, max_entry_bytes=1 << 20)  # type: ignore[arg-type]
    fields: Any = entry_fields(event)
    for _copy in range(2):  # the same event twice: handled once
        entry_id = await cluster_client.xadd(sub.stream, fields)
        read: Any = await cluster_client.xreadgroup(GROUP, "c", {sub.stream: ">"})
        assert read[0][1][0][0] == entry_id
        await path.process(sub, entry_id.decode(), read[0][1][0][1], 1)
    assert calls == [event.event_id]
    published: Any = await cluster_client.xrange(OUT)
    assert [f[b"request_id"].decode() for _, f in published] == [str(event.request_id)]
    assert (await cluster_client.xpending(sub.stream, GROUP))["pending"] == 0
    assert await cluster_client.get(sub.seen_key(str(event.event_id))) == b"done"


async def test_a_poison_entry_is_dead_lettered_and_acknowledged(
    cluster_client: RedisCluster,
) -> None:
    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        raise AssertionError("never called")

    sub = Subscription(streams.LOGOUT_REQUESTED, GROUP, handler, (LogoutRequested,), publishes=OUT)
    await cluster_client.xgroup_create(sub.stream, GROUP, id="0", mkstream=True)
    entry_id = await cluster_client.xadd(sub.stream, {"type": "logout.requested", "data": b"{nope"})
    await cluster_client.xreadgroup(GROUP, "c", {sub.stream: ">"})
    path = MessagePath(cluster_client, max_deliveries=5, max_entry_bytes=1 << 20)  # type: ignore[arg-type]
    await path.process(sub, entry_id.decode(), {b"data": b"{nope"}, 1)
    dead: Any = await cluster_client.xrange(streams.DEADLETTER)
    assert [f[b"reason"] for _, f in dead] == [b"invalid_message"]
    assert (await cluster_client.xpending(sub.stream, GROUP))["pending"] == 0


async def test_multi_runs_in_order_on_a_cluster(cluster_client: RedisCluster) -> None:
    pipe = multi(cluster_client)
    assert isinstance(pipe, InOrder)
    async with pipe:
        pipe.set("a", "1")
        pipe.get("a")
        pipe.incr("b")
        assert len(pipe) == 3
        assert await pipe.execute() == [True, b"1", 1]


async def test_the_claim_loop_reads_new_entries_when_the_reader_is_stuck(
    cluster: RedisClusterGroup, cluster_client: RedisCluster
) -> None:
    # FastStream's reader can stay stuck after a primary died: here it never starts at
    # all, and the claim loop alone must still take what is new, once.
    sub, calls = _recording()
    settings = ServiceSettings(redis_url=SecretStr(cluster.url), redis_cluster=True)
    redis = redis_client(settings)
    consumers = Consumers(
        broker=make_broker(settings), redis=redis, consumer="c1", subscriptions=[sub],
        claim_interval_ms=50,
    )  # fmt: skip
    await consumers.start()
    try:
        events = [logout() for _ in range(3)]
        for event in events:
            await cluster_client.xadd(sub.stream, entry_fields(event))  # type: ignore[arg-type]

        async def handled() -> bool:
            pending = (await cluster_client.xpending(sub.stream, GROUP))["pending"]
            return len(calls) == 3 and pending == 0

        await wait_until_async(handled, 10, what="the claim loop handled the new entries")
        assert sorted(calls) == sorted(e.event_id for e in events)
        assert len(await cluster_client.xrange(OUT)) == 3
    finally:
        await consumers.stop()
        await redis.aclose()
