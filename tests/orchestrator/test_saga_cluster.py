"""The saga store on a real Redis Cluster of three primaries (issue 19): several replicas
racing on one request still make every transition once; events reach their streams only
through the request's outbox and the relay, each once; deadlines sit in the request's
slot and every replica finds them; an Idempotency-Key gives back the first request."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from sortie_core import streams
from sortie_core.events import Subject, Target
from sortie_core.outbox import OUTBOX_SLOTS, Relay, outbox_key
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.saga_cluster import ClusterSagaStore, deadlines_key
from sortie_orchestrator.adapters.saga_store import IdempotencyMismatch, NotDurable, idem_key
from sortie_orchestrator.bootstrap import make_deps
from sortie_orchestrator.saga import Timeouts
from tests.orchestrator.test_replicas import report

ALICE = Subject(user_id="alice", upn="alice@example.org")


def deps_for(redis: RedisCluster, phase1: float = 30, **kw: Any) -> handlers.Deps:
    store = ClusterSagaStore(redis, retention_s=3600, idempotency_ttl_s=3600, **kw)
    timeouts = Timeouts(phase1=timedelta(seconds=phase1), sso=timedelta(seconds=60))
    return make_deps(redis, store, timeouts)  # type: ignore[arg-type]


async def accept(deps: handlers.Deps, key: str | None = None, reason: str = "t") -> uuid.UUID:
    _, rid = await handlers.accept_logout(
        deps,
        subject=ALICE,
        reason=reason,
        targets=[Target.M365, Target.ENT],
        sso_session=None,
        idempotency_key=key,
        principal="t",
        fingerprint=reason,
    )
    return rid


async def relayed(redis: RedisCluster, stream: str) -> Counter[str]:
    relay = Relay(redis, "test-relay")
    while await relay.relay_once():
        pass
    entries: Any = await redis.xrange(stream)
    return Counter(fields[b"request_id"].decode() for _, fields in entries)


async def test_accept_writes_only_the_requests_slot(cluster_client: RedisCluster) -> None:
    rid = await accept(deps_for(cluster_client))
    slot = key_slot(str(rid).encode())
    assert slot in OUTBOX_SLOTS
    assert key_slot(outbox_key(rid).encode()) == slot == key_slot(deadlines_key(rid).encode())
    # The first event (one logout.requested, for both workers) waits in the outbox
    # until the relay moves it.
    assert await cluster_client.xlen(outbox_key(rid)) == 1
    assert await cluster_client.exists(streams.LOGOUT_REQUESTED) == 0
    assert await relayed(cluster_client, streams.LOGOUT_REQUESTED) == {str(rid): 1}
    assert await cluster_client.xlen(outbox_key(rid)) == 0
    listing, _ = await deps_for(cluster_client).store.list(
        subject="alice", status=None, limit=5, cursor=None
    )
    assert [s.request_id for s in listing] == [rid]


async def test_concurrent_completions_publish_phase2_exactly_once(
    cluster_client: RedisCluster,
) -> None:
    replicas = [deps_for(cluster_client) for _ in range(4)]
    rids = [await accept(replicas[0]) for _ in range(10)]
    jobs = []
    for rid in rids:
        for i, replica in enumerate(replicas):
            for service in ("m365", "ent") if i % 2 else ("ent", "m365"):
                jobs.append(handlers.on_revocation(replica, report(rid, service)))
    await asyncio.gather(*jobs)
    assert await relayed(cluster_client, streams.SSO_LOGOUT_REQUESTED) == Counter(
        str(r) for r in rids
    )
    for rid in rids:
        loaded = await replicas[1].store.load(rid)
        assert loaded is not None and loaded.state.status == "sso_logout"


async def test_deadlines_fire_once_from_any_replica(cluster_client: RedisCluster) -> None:
    replicas = [deps_for(cluster_client, phase1=0.05) for _ in range(3)]
    rids = [await accept(replicas[0]) for _ in range(3)]
    await asyncio.sleep(0.1)
    due = await replicas[2].store.due(datetime.now(UTC))
    assert sorted(due) == sorted(str(r) for r in rids)
    assert await replicas[1].index.overdue(datetime.now(UTC)) == 3
    fire = [handlers.fire_deadline(r, str(rid)) for r in replicas for rid in rids]
    await asyncio.gather(*fire)
    assert await relayed(cluster_client, streams.SSO_LOGOUT_REQUESTED) == Counter(
        str(r) for r in rids
    )
    assert await replicas[0].store.due(datetime.now(UTC)) == []


async def test_an_idempotency_key_gives_back_the_first_request(
    cluster_client: RedisCluster,
) -> None:
    deps = deps_for(cluster_client)
    first = await accept(deps, key="k-1")
    assert await accept(deps, key="k-1") == first
    with pytest.raises(IdempotencyMismatch):
        await accept(deps, key="k-1", reason="another body")
    assert await relayed(cluster_client, streams.LOGOUT_REQUESTED) == {str(first): 1}


async def test_a_reservation_without_its_request_is_taken_over_after_the_grace(
    cluster_client: RedisCluster,
) -> None:
    # A first attempt reserved the key and died before writing its request.
    ghost = uuid.uuid4()
    await cluster_client.set(idem_key("k-2", "t"), f"{ghost} t", ex=3600)
    with pytest.raises(NotDurable) as refused:  # maybe still being written: retry
        await accept(deps_for(cluster_client), key="k-2")
    assert str(refused.value).startswith("TRYAGAIN")  # the intake's 503, not a 500
    later = deps_for(cluster_client, reservation_grace_s=0.0)
    rid = await accept(later, key="k-2")
    assert rid != ghost
    assert await accept(later, key="k-2") == rid
    assert await later.store.load(rid) is not None
